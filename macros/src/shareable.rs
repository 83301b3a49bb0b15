//! `#[derive(Shareable)]`: marks a `#[repr(C)]` struct of shareable fields as safe to keep
//! in shared memory, checking both conditions at compile time. Every problem is reported at
//! once: options, the kind of item, generics, the missing `repr(C)`, and (through spanned
//! assertions) each field that is not shareable.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields};

use crate::errors::Errors;

pub fn derive(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(i) => i,
        Err(e) => return e.to_compile_error(),
    };
    let mut errors = Errors::default();
    let krate = options(&input.attrs, &mut errors);
    let name = &input.ident;
    let fields = match &input.data {
        Data::Struct(s) => Some(&s.fields),
        Data::Enum(e) => {
            errors.push(syn::Error::new(
                e.enum_token.span(),
                "enums cannot be Shareable: a process killed mid-write could leave an invalid \
                 discriminant; use an integer field instead",
            ));
            None
        }
        Data::Union(u) => {
            errors.push(syn::Error::new(
                u.union_token.span(),
                "unions cannot be Shareable",
            ));
            None
        }
    };
    if !input.generics.params.is_empty() {
        errors.spanned(&input.generics, "Shareable structs cannot be generic");
    }
    if fields.is_some() && !has_repr_c(&input.attrs, &mut errors) {
        errors.spanned(
            name,
            "a Shareable struct needs #[repr(C)]: its layout must be the same in every process",
        );
    }
    let Some(fields) = fields.filter(|_| errors.is_empty()) else {
        return errors.to_compile_error();
    };
    let checks = match fields {
        Fields::Named(f) => f.named.iter().collect::<Vec<_>>(),
        Fields::Unnamed(f) => f.unnamed.iter().collect(),
        Fields::Unit => Vec::new(),
    }
    .into_iter()
    .map(|f| {
        let ty = &f.ty;
        quote_spanned!(ty.span()=> #krate::__private::assert_shareable::<#ty>();)
    });
    quote! {
        #[doc(hidden)]
        const _: () = {
            #[allow(dead_code)]
            fn __multiproc_check_fields() {
                #(#checks)*
            }
            // SAFETY: #[repr(C)], and every field is Shareable (checked above).
            #[automatically_derived]
            unsafe impl #krate::Shareable for #name {}
        };
    }
}

/// `#[shareable(crate = "path")]`; unknown options are errors.
fn options(attrs: &[Attribute], errors: &mut Errors) -> TokenStream {
    let mut krate = quote!(::multiproc);
    for attr in attrs.iter().filter(|a| a.path().is_ident("shareable")) {
        let r = attr.parse_nested_meta(|m| {
            if m.path.is_ident("crate") {
                let s: syn::LitStr = m.value()?.parse()?;
                let p: syn::Path = s.parse()?;
                krate = quote!(#p);
                Ok(())
            } else {
                Err(m.error("unknown option; expected `crate = \"path\"`"))
            }
        });
        errors.ok(r);
    }
    krate
}

/// Whether the item is `repr(C)` (or `transparent`), whatever else its `repr` says and in
/// whatever order: `#[repr(C, align(8))]`, `#[repr(align(8), C)]`, `#[repr(C)] #[repr(align(8))]`.
fn has_repr_c(attrs: &[Attribute], errors: &mut Errors) -> bool {
    let mut repr_c = false;
    for attr in attrs.iter().filter(|a| a.path().is_ident("repr")) {
        let r = attr.parse_nested_meta(|m| {
            if m.path.is_ident("C") || m.path.is_ident("transparent") {
                repr_c = true;
            }
            // `align(8)`, `packed(2)`: skip the argument so the next item parses.
            if m.input.peek(syn::token::Paren) {
                let args;
                syn::parenthesized!(args in m.input);
                args.parse::<TokenStream>()?;
            }
            Ok(())
        });
        errors.ok(r);
    }
    repr_c
}
