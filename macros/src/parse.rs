//! Validation of the function under `#[pool_task]`: everything that would stop it from
//! running in another process is reported here, all at once, spanned at the culprit.

use syn::visit::Visit;
use syn::{FnArg, GenericParam, ItemFn, ReturnType, Type};

use crate::errors::Errors;

/// Most arguments a task may take (the arity the runtime's `TaskFn` is implemented for).
pub const MAX_ARGS: usize = 12;

/// A validated task signature.
pub struct TaskSig<'a> {
    pub arg_types: Vec<&'a Type>,
    pub ret: Option<&'a Type>,
}

/// What [`Borrowed`] says of each piece it finds.
pub struct Messages {
    pub reference: &'static str,
    pub lifetime: &'static str,
    pub impl_trait: &'static str,
    pub pointer: &'static str,
}

/// Said of a `#[pool_task]` signature.
const TASK: Messages = Messages {
    reference: "task arguments must be owned: a reference cannot cross a process boundary \
                (take `String` instead of `&str`, `Vec<T>` instead of `&[T]`)",
    lifetime: "task argument and return types cannot borrow: use an owned type without lifetimes",
    impl_trait:
        "`impl Trait` cannot be used in a task signature: name a concrete serializable type",
    pointer: "raw pointers cannot cross a process boundary: pass the data itself",
};

/// Finds borrowed or opaque pieces anywhere inside a type (`Vec<&str>`, `Cow<'a, T>`),
/// each reported with its message.
pub struct Borrowed<'e> {
    pub errors: &'e mut Errors,
    pub messages: &'static Messages,
}

impl<'ast> Visit<'ast> for Borrowed<'_> {
    fn visit_type_reference(&mut self, r: &'ast syn::TypeReference) {
        self.errors.spanned(r, self.messages.reference);
    }
    fn visit_lifetime(&mut self, l: &'ast syn::Lifetime) {
        self.errors.spanned(l, self.messages.lifetime);
    }
    fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
        self.errors.spanned(t, self.messages.impl_trait);
    }
    fn visit_type_ptr(&mut self, p: &'ast syn::TypePtr) {
        self.errors.spanned(p, self.messages.pointer);
    }
}

/// Checks `f` and returns its argument and return types.
pub fn task_signature(f: &ItemFn) -> syn::Result<TaskSig<'_>> {
    let mut errors = Errors::default();
    let sig = &f.sig;
    if let Some(a) = &sig.asyncness {
        errors.spanned(
            a,
            "`async fn` is not supported by #[pool_task]: a worker runs tasks synchronously; \
             make it a plain `fn` (block on the future inside it if needed)",
        );
    }
    if let Some(u) = &sig.unsafety {
        errors.spanned(u, "#[pool_task] cannot be `unsafe`: its callers in other processes cannot uphold a contract");
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(
            abi,
            "#[pool_task] functions must use the Rust ABI; remove `extern`",
        );
    }
    if let Some(v) = &sig.variadic {
        errors.spanned(v, "#[pool_task] functions cannot be variadic");
    }
    for param in &sig.generics.params {
        let msg = match param {
            GenericParam::Lifetime(_) => {
                "#[pool_task] functions cannot have lifetime parameters: arguments must be owned"
            }
            GenericParam::Type(_) => {
                "#[pool_task] functions cannot be generic: a worker must find one concrete \
                 function by name; write a non-generic wrapper for each type you need"
            }
            GenericParam::Const(_) => {
                "#[pool_task] functions cannot have const parameters; pass the value as an argument"
            }
        };
        errors.spanned(param, msg);
    }
    if let Some(w) = &sig.generics.where_clause {
        errors.spanned(w, "#[pool_task] functions cannot have a where clause");
    }
    let mut arg_types = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => errors.spanned(
                r,
                "#[pool_task] must be a free function, not a method: `self` cannot be sent to \
                 a worker; pass the value as an ordinary argument",
            ),
            FnArg::Typed(pt) => {
                Borrowed {
                    errors: &mut errors,
                    messages: &TASK,
                }
                .visit_type(&pt.ty);
                arg_types.push(&*pt.ty);
            }
        }
    }
    if sig.inputs.len() > MAX_ARGS {
        errors.spanned(
            &sig.inputs,
            "#[pool_task] functions take at most 12 arguments; group them in a struct",
        );
    }
    let ret = match &sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => {
            Borrowed {
                errors: &mut errors,
                messages: &TASK,
            }
            .visit_type(ty);
            Some(&**ty)
        }
    };
    errors.finish()?;
    Ok(TaskSig { arg_types, ret })
}
