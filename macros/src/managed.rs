//! `#[managed]` on an `impl` block: the server-side dispatch and a typed client proxy for a
//! type a manager serves.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, Pat, ReturnType, Type};

use crate::args::Args;
use crate::errors::Errors;
use crate::parse::{Borrowed, Messages};

/// One exposed method, validated.
struct Method<'a> {
    f: &'a ImplItemFn,
    /// Argument names for the proxy (the pattern's ident, or a generated one) and types,
    /// `Self` spelled out (the proxy's methods are not in the type's `impl`).
    args: Vec<(Ident, Type)>,
    ret: Option<Type>,
}

/// Replaces `Self` in a type by the type itself.
struct NameSelf<'a>(&'a Type);

impl VisitMut for NameSelf<'_> {
    fn visit_type_mut(&mut self, t: &mut Type) {
        if let Type::Path(p) = t {
            if p.qself.is_none() && p.path.is_ident("Self") {
                *t = self.0.clone();
                return;
            }
        }
        syn::visit_mut::visit_type_mut(self, t);
    }
}

fn named(t: &Type, self_ty: &Type) -> Type {
    let mut t = t.clone();
    NameSelf(self_ty).visit_type_mut(&mut t);
    t
}

/// Said of a `#[managed]` method's types.
const MANAGED: Messages = Messages {
    reference: "#[managed] methods take and return owned values: a reference to outside state \
                cannot cross to the manager's process (take `String`, not `&str`)",
    lifetime: "#[managed] method types cannot borrow: use an owned type without lifetimes",
    impl_trait:
        "`impl Trait` cannot cross to the manager's process: name a concrete serializable type",
    pointer: "raw pointers cannot cross to the manager's process: pass the data itself",
};

fn check_owned(t: &Type, errors: &mut Errors) {
    Borrowed {
        errors,
        messages: &MANAGED,
    }
    .visit_type(t);
}

/// The methods to expose (those taking `&self` or `&mut self`), every problem recorded.
fn methods<'a>(imp: &'a ItemImpl, errors: &mut Errors) -> Vec<Method<'a>> {
    let mut out = Vec::new();
    for item in &imp.items {
        let ImplItem::Fn(f) = item else { continue };
        let sig = &f.sig;
        let Some(FnArg::Receiver(recv)) = sig.inputs.first() else {
            // Associated functions (constructors) stay in this process.
            continue;
        };
        if recv.reference.is_none() || recv.colon_token.is_some() {
            errors.spanned(
                recv,
                "#[managed] methods take `&self` or `&mut self`: the object stays in the \
                 manager's process",
            );
        }
        if let Some(a) = &sig.asyncness {
            errors.spanned(a, "#[managed] methods cannot be `async`");
        }
        if let Some(u) = &sig.unsafety {
            errors.spanned(u, "#[managed] methods cannot be `unsafe`");
        }
        if !sig.generics.params.is_empty() {
            errors.spanned(
                &sig.generics,
                "generic methods cannot be #[managed]: the manager's process must know one \
                 concrete signature to call",
            );
        }
        let mut args = Vec::new();
        for (i, arg) in sig.inputs.iter().skip(1).enumerate() {
            let FnArg::Typed(pt) = arg else { continue };
            check_owned(&pt.ty, errors);
            let name = match &*pt.pat {
                Pat::Ident(p) => p.ident.clone(),
                _ => format_ident!("__multiproc_arg{}", i),
            };
            args.push((name, named(&pt.ty, &imp.self_ty)));
        }
        let ret = match &sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, t) => {
                check_owned(t, errors);
                Some(named(t, &imp.self_ty))
            }
        };
        out.push(Method { f, args, ret });
    }
    out
}

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let krate = errors.ok(Args::parse(args)).map(|a| a.krate);
    let imp: ItemImpl = match syn::parse2(item.clone()) {
        Ok(i) => i,
        Err(e) => {
            let e = syn::Error::new(
                e.span(),
                "#[managed] goes on an inherent `impl` block: `#[managed] impl MyType { ... }`",
            );
            let err = e.to_compile_error();
            return quote!(#item #err);
        }
    };
    if let Some((_, path, _)) = &imp.trait_ {
        errors.spanned(
            path,
            "#[managed] goes on an inherent `impl` block, not a trait impl",
        );
    }
    if !imp.generics.params.is_empty() {
        errors.spanned(
            &imp.generics,
            "#[managed] types cannot be generic: the manager's process finds the type by one \
             name",
        );
    }
    let ty_ident = match &*imp.self_ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.clone()),
        _ => None,
    };
    let Some(ty_ident) = ty_ident else {
        errors.spanned(&imp.self_ty, "#[managed] needs a named type: `impl MyType`");
        let err = errors.to_compile_error();
        return quote!(#imp #err);
    };
    let methods = methods(&imp, &mut errors);
    let Some(krate) = krate.filter(|_| errors.is_empty()) else {
        let err = errors.to_compile_error();
        return quote!(#imp #err);
    };
    let generated = generate(&krate, &imp.self_ty, &ty_ident, &methods);
    quote! {
        #imp
        #generated
    }
}

fn generate(
    krate: &TokenStream,
    self_ty: &Type,
    ty_ident: &Ident,
    methods: &[Method<'_>],
) -> TokenStream {
    let private = quote!(#krate::__private);
    let proxy = format_ident!("{}Proxy", ty_ident);
    let proxy_doc = format!(
        "A proxy of a `{ty_ident}` served by a manager (generated by `#[managed]`): each \
         method runs on the manager's object and returns its result, or the error that kept \
         it from running."
    );
    let type_name = ty_ident.to_string();
    let mut arms = Vec::new();
    let mut proxy_methods = Vec::new();
    let mut checks = Vec::new();
    for m in methods {
        let name = &m.f.sig.ident;
        let name_str = name.to_string();
        let what = format!("{type_name}::{name_str}");
        let vis = &m.f.vis;
        let names: Vec<&Ident> = m.args.iter().map(|(n, _)| n).collect();
        let types: Vec<&Type> = m.args.iter().map(|(_, t)| t).collect();
        let unit: Type = syn::parse_quote!(());
        let ret = m.ret.as_ref().unwrap_or(&unit);
        let ret_span = m.ret.as_ref().map_or_else(Span::call_site, |t| t.span());
        checks.extend(types.iter().map(|t| {
            quote_spanned! {t.span()=> #private::assert_task_arg::<#t>(); }
        }));
        checks.push(quote_spanned! {ret_span=> #private::assert_task_output::<#ret>(); });
        let docs = m.f.attrs.iter().filter(|a| a.path().is_ident("doc"));
        arms.push(quote! {
            #name_str => {
                if sig != #private::method_tag::<(#(#types,)*), #ret>(#name_str) {
                    return ::core::result::Result::Err(#private::signature_mismatch(#what));
                }
                let (#(#names,)*): (#(#types,)*) = #private::decode_method_args(args, #what)?;
                let out: #ret = self.#name(#(#names),*);
                #private::encode_method_output(&out, #what)
            }
        });
        proxy_methods.push(quote! {
            #(#docs)*
            #[allow(clippy::too_many_arguments)]
            #vis fn #name(&self, #(#names: #types),*) -> #krate::Result<#ret> {
                self.inner.call::<(#(#types,)*), #ret>(#name_str, #what, &(#(#names,)*))
            }
        });
    }
    quote! {
        #[doc = #proxy_doc]
        #[derive(Clone, Debug)]
        pub struct #proxy {
            inner: #private::ObjectProxy,
        }

        #[automatically_derived]
        impl #proxy {
            #(#proxy_methods)*
        }

        #[doc(hidden)]
        #[allow(non_upper_case_globals, clippy::all)]
        const _: () = {
            #[allow(dead_code)]
            fn __multiproc_assert_types() {
                #private::assert_managed::<#self_ty>();
                #(#checks)*
            }

            #[automatically_derived]
            impl #krate::Managed for #self_ty {
                const NAME: &'static str = ::core::concat!(::core::module_path!(), "::", #type_name);
                type Proxy = #proxy;
            }

            #[automatically_derived]
            impl #krate::ManagedProxy for #proxy {
                fn from_object(inner: #private::ObjectProxy) -> Self {
                    #proxy { inner }
                }
            }

            #[automatically_derived]
            impl #private::serde::Serialize for #proxy {
                fn serialize<S: #private::serde::Serializer>(
                    &self,
                    s: S,
                ) -> ::core::result::Result<S::Ok, S::Error> {
                    self.inner.serialize(s)
                }
            }

            #[automatically_derived]
            impl<'de> #private::serde::Deserialize<'de> for #proxy {
                fn deserialize<D: #private::serde::Deserializer<'de>>(
                    d: D,
                ) -> ::core::result::Result<Self, D::Error> {
                    #private::ObjectProxy::deserialize_as(
                        <#self_ty as #krate::Managed>::NAME,
                        d,
                    )
                    .map(|inner| #proxy { inner })
                }
            }

            #[automatically_derived]
            impl #private::Dispatch for #self_ty {
                #[allow(unused_variables)]
                fn call(
                    &mut self,
                    method: &str,
                    sig: u64,
                    args: &[u8],
                ) -> ::core::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    match method {
                        #(#arms)*
                        other => ::core::result::Result::Err(#private::no_such_method(#type_name, other)),
                    }
                }
            }

            #[#private::linkme::distributed_slice(#private::MANAGED_TYPES)]
            #[linkme(crate = #private::linkme)]
            static __MULTIPROC_MANAGED: #private::ManagedType = #private::ManagedType {
                name: <#self_ty as #krate::Managed>::NAME,
                decode: #private::decode_managed::<#self_ty>,
            };
        };
    }
}
