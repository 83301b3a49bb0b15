//! `#[derive(Shareable)]`: marks a `#[repr(C)]` struct of shareable fields as safe to keep
//! in shared memory, checking both conditions at compile time.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields};

pub fn derive(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(i) => i,
        Err(e) => return e.to_compile_error(),
    };
    let mut krate = quote!(::multiproc);
    for attr in &input.attrs {
        if attr.path().is_ident("shareable") {
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
            if let Err(e) = r {
                return e.to_compile_error();
            }
        }
    }
    let name = &input.ident;
    let fields = match &input.data {
        Data::Struct(s) => &s.fields,
        Data::Enum(e) => {
            return syn::Error::new(
                e.enum_token.span(),
                "enums cannot be Shareable: a process killed mid-write could leave an invalid \
                 discriminant; use an integer field instead",
            )
            .to_compile_error()
        }
        Data::Union(u) => {
            return syn::Error::new(u.union_token.span(), "unions cannot be Shareable")
                .to_compile_error()
        }
    };
    if !input.generics.params.is_empty() {
        return syn::Error::new_spanned(&input.generics, "Shareable structs cannot be generic")
            .to_compile_error();
    }
    let mut repr_c = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("repr")) {
        let _ = attr.parse_nested_meta(|m| {
            if m.path.is_ident("C") || m.path.is_ident("transparent") {
                repr_c = true;
            }
            Ok(())
        });
    }
    if !repr_c {
        return syn::Error::new_spanned(
            name,
            "a Shareable struct needs #[repr(C)]: its layout must be the same in every process",
        )
        .to_compile_error();
    }
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
        const _: () = {
            fn __multiproc_check_fields() {
                #(#checks)*
            }
            // SAFETY: #[repr(C)], and every field is Shareable (checked above).
            unsafe impl #krate::Shareable for #name {}
        };
    }
}
