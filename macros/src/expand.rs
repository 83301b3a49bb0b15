//! Code generation for `#[pool_task]`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Item, ItemFn};

use crate::args::Args;
use crate::errors::Errors;
use crate::parse::task_signature;

/// Entry point of `#[pool_task]`: the user's item, plus either the task registration or the
/// errors. On error the function is still emitted so its callers see one message, not many.
pub fn pool_task(args: TokenStream, item: TokenStream) -> TokenStream {
    let parsed_args = Args::parse(args);
    let item: Item = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(e) => return e.to_compile_error(),
    };
    let mut func = match item {
        Item::Fn(f) => f,
        other => {
            let err = syn::Error::new_spanned(
                item_keyword(&other),
                "#[pool_task] can only be applied to a free function (`fn name(args) -> T`)",
            );
            let err = err.to_compile_error();
            return quote!(#err #other);
        }
    };
    let mut errors = Errors::default();
    let krate = errors.ok(parsed_args).map(|a| a.krate);
    // Taken off the parameters first: the function is emitted without them either way.
    let defaults = crate::defaults::take(&mut func, &mut errors);
    let sig = errors.ok(task_signature(&func));
    match (krate, sig) {
        (Some(krate), Some(sig)) if errors.is_empty() => {
            let registration = registration(&krate, &func, &sig);
            let keywords = defaults.map(|params| crate::defaults::expand(&krate, &func, &params));
            quote!(#func #registration #keywords)
        }
        _ => {
            let errs = errors.to_compile_error();
            quote!(#func #errs)
        }
    }
}

/// The leading keyword of a non-function item, so the error points at something short.
fn item_keyword(item: &Item) -> TokenStream {
    match item {
        Item::Struct(s) => {
            let t = &s.struct_token;
            quote!(#t)
        }
        Item::Enum(e) => {
            let t = &e.enum_token;
            quote!(#t)
        }
        Item::Const(c) => {
            let t = &c.const_token;
            quote!(#t)
        }
        Item::Static(s) => {
            let t = &s.static_token;
            quote!(#t)
        }
        Item::Impl(i) => {
            let t = &i.impl_token;
            quote!(#t)
        }
        Item::Mod(m) => {
            let t = &m.mod_token;
            quote!(#t)
        }
        Item::Trait(t) => {
            let t = &t.trait_token;
            quote!(#t)
        }
        other => quote!(#other),
    }
}

fn registration(
    krate: &TokenStream,
    func: &ItemFn,
    sig: &crate::parse::TaskSig<'_>,
) -> TokenStream {
    let name = &func.sig.ident;
    let name_str = name.to_string();
    let private = quote!(#krate::__private);
    let arg_checks = sig.arg_types.iter().map(|ty| {
        quote_spanned! {ty.span()=> #private::assert_task_arg::<#ty>(); }
    });
    let ret_check = sig.ret.map(|ty| {
        quote_spanned! {ty.span()=> #private::assert_task_output::<#ty>(); }
    });
    let tys = &sig.arg_types;
    let args_tuple = quote!((#(#tys,)*));
    let static_name = format_ident!("__MULTIPROC_TASK_{}", name_str.to_uppercase());
    let entry = entry_static(
        krate,
        &static_name,
        quote!(::core::concat!(::core::module_path!(), "::", #name_str)),
        quote!(#name),
        &args_tuple,
    );
    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals, clippy::all)]
        const _: () = {
            #[allow(dead_code)]
            fn __multiproc_assert_types() {
                #(#arg_checks)*
                #ret_check
            }

            #entry
        };
    }
}

/// One task's entry in the link-time task table: `value` is the task (a function, or a
/// value implementing `TaskFn<args>`), `name` an expression for its stable name.
pub fn entry_static(
    krate: &TokenStream,
    static_name: &syn::Ident,
    name: TokenStream,
    value: TokenStream,
    args: &TokenStream,
) -> TokenStream {
    let private = quote!(#krate::__private);
    let slice_path = quote!(#private::TASKS);
    quote! {
        #[#private::linkme::distributed_slice(#slice_path)]
        #[linkme(crate = #private::linkme)]
        static #static_name: #private::TaskEntry = #private::TaskEntry {
            name: #name,
            type_id: || #private::type_id_of(&#value),
            run_chunk: |input, out| #private::run_chunk::<#args, _>(input, out, #value),
            run_chunk_par: |input, out, threads| {
                #[allow(unused_imports)]
                use #private::{ParNone as _, ParRun as _};
                (&#private::Par::<#args, _>::new(#value)).run_par(input, out, threads)
            },
            signature: || #private::signature_of::<#args, _>(&#value),
            call_here: |slot| #private::call_here::<#args, _>(slot, #value),
        };
    }
}
