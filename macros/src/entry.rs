//! `#[multiproc::main]` and `#[multiproc::test]`: make a program (or test) able to act as a
//! worker by calling into the runtime before anything else runs.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemFn;

use crate::args::Args;
use crate::errors::Errors;

fn parse(
    args: TokenStream,
    item: TokenStream,
    what: &str,
) -> Result<(TokenStream, ItemFn), TokenStream> {
    let item_fn: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let msg = format!("#[multiproc::{what}] can only be applied to a function");
            let err = syn::Error::new_spanned(&item, msg).to_compile_error();
            return Err(quote!(#err #item));
        }
    };
    let mut errors = Errors::default();
    let krate = errors
        .ok(Args::parse(args))
        .map_or_else(|| quote!(::multiproc), |a| a.krate);
    if let Some(a) = &item_fn.sig.asyncness {
        errors.push(syn::Error::new_spanned(
            a,
            format!(
                "#[multiproc::{what}] needs a synchronous fn; with an async runtime attribute, \
                 put #[multiproc::{what}] *below* it (e.g. after #[tokio::main])"
            ),
        ));
    }
    if !item_fn.sig.inputs.is_empty() {
        errors.push(syn::Error::new_spanned(
            &item_fn.sig.inputs,
            format!("#[multiproc::{what}] functions take no arguments"),
        ));
    }
    if !item_fn.sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &item_fn.sig.generics,
            format!("#[multiproc::{what}] functions cannot be generic"),
        ));
    }
    if errors.is_empty() {
        Ok((krate, item_fn))
    } else {
        let errs = errors.to_compile_error();
        Err(quote!(#errs #item_fn))
    }
}

/// `#[multiproc::main]`: prepend `init()`.
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    let (krate, mut f) = match parse(args, item, "main") {
        Ok(v) => v,
        Err(e) => return e,
    };
    let init: syn::Stmt = syn::parse_quote!(#krate::init(););
    f.block.stmts.insert(0, init);
    quote!(#f)
}

/// `#[multiproc::test]`: a `#[test]` that registers its own name for worker re-execution.
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    let (krate, mut f) = match parse(args, item, "test") {
        Ok(v) => v,
        Err(e) => return e,
    };
    let name = f.sig.ident.to_string();
    let enter: syn::Stmt = syn::parse_quote!(
        #krate::__private::enter_test(::core::module_path!(), #name);
    );
    f.block.stmts.insert(0, enter);
    quote!(#[::core::prelude::v1::test] #f)
}
