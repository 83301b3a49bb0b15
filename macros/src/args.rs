//! Attribute options shared by all three attributes: only `crate = "path"` today.

use proc_macro2::TokenStream;
use quote::quote;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, Meta, Path, Token};

use crate::errors::Errors;

/// Parsed attribute options.
pub struct Args {
    /// Path to the runtime crate, `::multiproc` unless renamed.
    pub krate: TokenStream,
}

impl Args {
    /// Parses `crate = "path"`; every problem becomes one error, combined.
    pub fn parse(tokens: TokenStream) -> syn::Result<Args> {
        let mut krate = quote!(::multiproc);
        let mut errors = Errors::default();
        let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens)?;
        for meta in metas {
            let result = match &meta {
                Meta::NameValue(nv) if nv.path.is_ident("crate") => match &nv.value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(s), ..
                    }) => s.parse::<Path>().map(|p| krate = quote!(#p)),
                    other => Err(syn::Error::new_spanned(
                        other,
                        "expected a string: `crate = \"path::to::multiproc\"`",
                    )),
                },
                _ => Err(syn::Error::new_spanned(
                    &meta,
                    "unknown option; the only option is `crate = \"path::to::multiproc\"`",
                )),
            };
            errors.ok(result);
        }
        errors.finish()?;
        Ok(Args { krate })
    }
}
