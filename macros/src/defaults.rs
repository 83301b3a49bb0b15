//! Keyword arguments with defaults: `#[pool_task] fn f(a: u32, #[default(10)] b: u32)`.
//!
//! The function keeps its positional signature (`pool.apply(f, (a, b))`). Beside it, in a
//! module of the same name (modules and functions live in different namespaces), the macro
//! generates Python's keyword form:
//! - `f::Args`, a serializable struct with one public field per parameter;
//! - `f::args(required...)`, the arguments with every default filled in, and one setter per
//!   defaulted parameter (`f::args(a).b(3)`), or struct update (`f::Args { b: 3, ..f::args(a) }`);
//! - `f::kw`, a task taking an `f::Args`, registered like any `#[pool_task]`, so every pool
//!   call, `Process` and `Task::of` take it: `pool.apply(f::kw, f::args(a).b(3))`.
//!
//! A default is an expression evaluated in the caller's process each time `f::args` runs; a
//! default of the wrong type is a type error spanned at the expression.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, FnArg, Ident, ItemFn, Pat, ReturnType, Type};

use crate::errors::Errors;
use crate::expand::entry_static;

/// One parameter of a task with defaults.
pub struct Param {
    pub ident: Ident,
    pub ty: Type,
    pub default: Option<Expr>,
}

/// Removes every `#[default(expr)]` from `func`'s parameters. Returns the parameters if at
/// least one had a default (`None` otherwise: no keyword form is generated).
pub fn take(func: &mut ItemFn, errors: &mut Errors) -> Option<Vec<Param>> {
    let mut params = Vec::new();
    let mut any = false;
    for input in &mut func.sig.inputs {
        let FnArg::Typed(pt) = input else {
            continue; // `self` is reported by the signature check
        };
        let mut default = None;
        let mut kept = Vec::new();
        for attr in std::mem::take(&mut pt.attrs) {
            if !attr.path().is_ident("default") {
                kept.push(attr);
                continue;
            }
            match attr.parse_args::<Expr>() {
                Ok(e) if default.is_none() => default = Some(e),
                Ok(_) => errors.spanned(&attr, "this parameter already has a default"),
                Err(_) => errors.spanned(
                    &attr,
                    "write the default as `#[default(expression)]`, e.g. `#[default(10)]`",
                ),
            }
        }
        pt.attrs = kept;
        any |= default.is_some();
        let ident = match &*pt.pat {
            Pat::Ident(p) if p.subpat.is_none() => Some(p.ident.clone()),
            _ => None,
        };
        match ident {
            Some(ident) => params.push(Param {
                ident,
                ty: (*pt.ty).clone(),
                default,
            }),
            None => params.push(Param {
                ident: format_ident!("__unnamed"),
                ty: (*pt.ty).clone(),
                default: None,
            }),
        }
    }
    if !any {
        return None;
    }
    for (input, p) in func.sig.inputs.iter().zip(&params) {
        if p.ident == "__unnamed" {
            errors.spanned(
                input,
                format!(
                    "a task with defaults needs a plain name for every parameter: they become \
                     the fields of its keyword arguments (`{}::Args`)",
                    func.sig.ident
                ),
            );
        }
    }
    Some(params)
}

/// The keyword form of `func` (see the module docs).
pub fn expand(krate: &TokenStream, func: &ItemFn, params: &[Param]) -> TokenStream {
    let vis = &func.vis;
    let name = &func.sig.ident;
    let name_str = name.to_string();
    let ret = match &func.sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
    };
    let serde_path = format!("{}::__private::serde", krate).replace(' ', "");
    let fields = params.iter().map(|p| {
        let (ident, ty) = (&p.ident, &p.ty);
        quote!(pub #ident: #ty)
    });
    let required: Vec<&Param> = params.iter().filter(|p| p.default.is_none()).collect();
    let required_args = required.iter().map(|p| {
        let (ident, ty) = (&p.ident, &p.ty);
        quote!(#ident: #ty)
    });
    let inits = params.iter().map(|p| {
        let ident = &p.ident;
        match &p.default {
            // Spanned at the expression: a default of the wrong type is reported there.
            Some(e) => quote_spanned!(e.span()=> #ident: #e),
            None => quote!(#ident),
        }
    });
    let setters = params.iter().filter(|p| p.default.is_some()).map(|p| {
        let (ident, ty) = (&p.ident, &p.ty);
        let doc = format!(
            "Sets `{ident}` (default `{}`).",
            expr_text(p.default.as_ref())
        );
        quote! {
            #[doc = #doc]
            #[must_use]
            pub fn #ident(mut self, value: #ty) -> Self {
                self.#ident = value;
                self
            }
        }
    });
    let idents: Vec<&Ident> = params.iter().map(|p| &p.ident).collect();
    let args_doc = format!(
        "The arguments of [`{name_str}`](fn@super::{name_str}), by name: [`args`] fills in the \
         defaults, [`kw`] is the task that takes them."
    );
    let fn_doc = format!(
        "The arguments of [`{name_str}`](fn@super::{name_str}) with every default filled in; \
         set others by name (`{name_str}::args(..).field(value)`)."
    );
    let kw_doc = format!(
        "[`{name_str}`](fn@super::{name_str}) as a task taking its arguments by name \
         ([`Args`]): `pool.apply({name_str}::kw, {name_str}::args(..))`."
    );
    let static_name = format_ident!("__MULTIPROC_TASK_{}__KW", name_str.to_uppercase());
    let entry = entry_static(
        krate,
        &static_name,
        quote!(::core::concat!(::core::module_path!(), "::", #name_str, "::kw")),
        quote!(#name::kw),
        &quote!(#name::Args),
    );
    quote! {
        #[doc = #args_doc]
        #[allow(non_camel_case_types, clippy::all)]
        #vis mod #name {
            #[allow(unused_imports)]
            use super::*;

            #[doc = #args_doc]
            #[derive(#krate::__private::serde::Serialize, #krate::__private::serde::Deserialize)]
            #[serde(crate = #serde_path)]
            pub struct Args {
                #(#fields,)*
            }

            #[doc = #fn_doc]
            pub fn args(#(#required_args),*) -> Args {
                Args { #(#inits,)* }
            }

            impl Args {
                #(#setters)*
            }

            #[doc = #kw_doc]
            #[derive(Clone, Copy, Debug)]
            pub struct kw;

            impl #krate::TaskFn<Args> for kw {
                type Output = #ret;
                fn call(&self, a: Args) -> #ret {
                    super::#name(#(a.#idents),*)
                }
            }
        }

        #[doc(hidden)]
        #[allow(non_upper_case_globals, clippy::all)]
        const _: () = {
            #entry
        };
    }
}

/// A default's source text, for the setter's docs.
fn expr_text(e: Option<&Expr>) -> String {
    e.map(|e| quote!(#e).to_string()).unwrap_or_default()
}
