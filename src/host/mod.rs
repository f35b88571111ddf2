//! Host functions: async closures on the host that guests import and call
//! like any other function ([`PoolBuilder::host_fn`](crate::PoolBuilder::host_fn)).
//!
//! A guest's call of an import that nothing else provides travels the
//! path of a `wasmpool:sync` operation: the worker sends a
//! [`GuestOp::Host`](crate::wire::GuestOp::Host) with the arguments as
//! MessagePack, the worker's [`Seat`] on the host runs the registered
//! closure in the context of the caller's Tokio runtime, and the answer goes
//! back to the blocked guest through the worker's answer sink.
//!
//! [`HostFns`] is the pool's table of closures; [`Seat`] is one worker's
//! place at it, with the [`Scope`] of the call it runs now: the export, the
//! call's data, the runtime, the host futures still pending (dropped when
//! the call ends or is cancelled) and the host functions' own errors, kept
//! to become the caller's error's source.

pub(crate) mod http;
pub(crate) mod resources;
mod seat;

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) use seat::{Scope, Seat};

use crate::Resource;
use crate::values;

/// The error a host function returns: any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a host function knows of the call it serves.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), wasmpool::Error> {
/// use wasmpool::{BoxError, HostContext, Pool};
/// let pool = Pool::builder()
///     .host_fn("my:app/api#log", |cx: HostContext, (line,): (String,)| async move {
///         println!("[{} in {}] {line}", cx.function(), cx.export());
///         Ok::<(), BoxError>(())
///     })
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HostContext {
    function: Arc<str>,
    export: Arc<str>,
    pid: Option<u32>,
    data: Option<Arc<dyn Any + Send + Sync>>,
    /// The host values the call's guest (its session's, for a session)
    /// holds handles to.
    resources: Arc<resources::HostTable>,
    /// The resource type the function returns a handle of, if any.
    returns: Option<Arc<str>>,
}

impl HostContext {
    /// The context of a host call that came over the network.
    #[cfg(feature = "cluster")]
    pub(crate) fn remote(
        function: &str,
        export: &str,
        data: Option<Arc<dyn Any + Send + Sync>>,
    ) -> HostContext {
        HostContext {
            function: function.into(),
            export: export.into(),
            pid: None,
            data,
            resources: Arc::default(),
            returns: None,
        }
    }

    /// The import being called, fully qualified as the component imports
    /// it (`"my:app/api@1.0.0#add"`, or `"add"` at world level).
    pub fn function(&self) -> &str {
        &self.function
    }

    /// The guest export whose call this is, as the call named it once
    /// resolved (`"run"`, or `"ns:pkg/iface@1.0.0#run"`).
    pub fn export(&self) -> &str {
        &self.export
    }

    /// The worker process running the guest; `None` on a thread worker.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The call's data, set with [`Call::data`](crate::Call::data), if it
    /// has one of type `T`.
    pub fn data<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.data.as_deref()?.downcast_ref()
    }

    /// Makes `value` a resource the guest holds: the [`Resource`] a host
    /// function returns for an `own<T>` of a resource type the guest
    /// imports (a `[constructor]T`, say). Its
    /// [`type_name`](Resource::type_name) is `T`, the resource the
    /// function returns. The guest's handle is the
    /// host's value: when the guest drops it, `value` is dropped. Values
    /// the guest still holds are dropped when its call ends, or, for a
    /// [session](crate::Session)'s guest, when the session closes or is
    /// lost.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), wasmpool::Error> {
    /// use std::collections::HashMap;
    /// use std::sync::{Arc, Mutex};
    /// use wasmpool::{BoxError, HostContext, Pool, Resource};
    ///
    /// #[derive(Default)]
    /// struct Kv(Mutex<HashMap<String, String>>);
    ///
    /// let pool = Pool::builder()
    ///     .host_fn("pkg:x/store#[constructor]kv", |cx: HostContext, (_name,): (String,)| async move {
    ///         Ok::<_, BoxError>(cx.new_resource(Kv::default()))
    ///     })
    ///     .host_fn("pkg:x/store#[method]kv.get", |cx: HostContext, (this, key): (Resource, String)| async move {
    ///         let kv: Arc<Kv> = cx.resource(&this)?;
    ///         Ok::<_, BoxError>(kv.0.lock().unwrap().get(&key).cloned())
    ///     })
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Panics
    ///
    /// If the guest has been given 2^32 values in one call or session.
    pub fn new_resource<T: Any + Send + Sync>(&self, value: T) -> Resource {
        let type_name = self
            .returns
            .as_deref()
            .or_else(|| resources::resource_of(&self.function))
            .unwrap_or("resource");
        let id = self
            .resources
            .insert(Arc::new(value), type_name)
            .expect("fewer than 2^32 host resources in one call or session");
        Resource::host(u64::from(id), type_name)
    }

    /// The value of `resource`, a handle the guest passed to this host
    /// function (a method's `self`, say), made by
    /// [`new_resource`](HostContext::new_resource) with a value of type
    /// `T`.
    ///
    /// # Errors
    ///
    /// If `resource` is not a host value of the guest's, or its value is
    /// not a `T`.
    pub fn resource<T: Any + Send + Sync>(&self, resource: &Resource) -> Result<Arc<T>, BoxError> {
        let found = resource
            .is_host()
            .then(|| u32::try_from(resource.handle()).ok())
            .flatten()
            .and_then(|id| self.resources.get(id));
        let Some((value, type_name)) = found else {
            return Err(format!(
                "resource {} (handle {}) is not a value the host gave this guest",
                resource.type_name(),
                resource.handle()
            )
            .into());
        };
        value.downcast::<T>().map_err(|_| {
            format!(
                "resource {type_name} (handle {}) holds no {}",
                resource.handle(),
                std::any::type_name::<T>()
            )
            .into()
        })
    }
}

impl fmt::Debug for HostContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let HostContext {
            function,
            export,
            pid,
            data,
            resources: _,
            returns: _,
        } = self;
        f.debug_struct("HostContext")
            .field("function", function)
            .field("export", export)
            .field("pid", pid)
            .field("has_data", &data.is_some())
            .finish()
    }
}

/// How a host function call failed, on the host.
pub(crate) enum Failure {
    /// The function returned an error, or panicked (the panic's message as
    /// an error).
    Func(BoxError),
    /// The arguments or the result did not fit: what, with its path.
    Mismatch(String),
}

pub(crate) type HostFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, Failure>> + Send>>;

/// A host function with its types erased: MessagePack arguments in,
/// MessagePack result out.
type ErasedFn = dyn Fn(HostContext, Vec<u8>) -> HostFuture + Send + Sync;

/// A pool's host functions, by the name they were registered with.
#[derive(Clone, Default)]
pub(crate) struct HostFns {
    map: HashMap<String, Arc<ErasedFn>>,
    /// What serves every function the map does not: a cluster node's
    /// forwarding of host calls to the caller.
    fallback: Option<Arc<ErasedFn>>,
}

impl fmt::Debug for HostFns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.map.keys().collect();
        names.sort();
        f.debug_set().entries(names).finish()
    }
}

impl HostFns {
    /// Registers `f` as `name`; a second registration of a name replaces
    /// the first.
    pub(crate) fn insert<A, R, E, F, Fut>(&mut self, name: String, f: F)
    where
        F: Fn(HostContext, A) -> Fut + Send + Sync + 'static,
        A: DeserializeOwned + Send + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
        R: Serialize + 'static,
        E: Into<BoxError> + 'static,
    {
        let f = Arc::new(f);
        let erased = move |cx: HostContext, args: Vec<u8>| -> HostFuture {
            let f = f.clone();
            // Everything of the user's (the arguments' `Deserialize`, the
            // closure) runs when the future is polled, inside the caller's
            // `catch_unwind`: making the future runs none of it.
            Box::pin(async move {
                let args = values::decode(&args)
                    .map_err(|e| format!("args: not valid MessagePack: {e}"))
                    .and_then(|v| values::from_value::<A>(v, "args").map_err(|e| e.to_string()))
                    .map_err(Failure::Mismatch)?;
                let result = f(cx, args).await.map_err(|e| Failure::Func(e.into()))?;
                rmp_serde::to_vec_named(&result)
                    .map_err(|e| Failure::Mismatch(format!("result: cannot be encoded: {e}")))
            })
        };
        self.map.insert(name, Arc::new(erased));
    }

    /// Serves every function not registered by name with `f`.
    #[cfg(feature = "cluster")]
    pub(crate) fn set_fallback(
        &mut self,
        f: impl Fn(HostContext, Vec<u8>) -> HostFuture + Send + Sync + 'static,
    ) {
        self.fallback = Some(Arc::new(f));
    }

    /// The future of the function `cx.function()` called with `args`
    /// (MessagePack), if one is registered.
    #[cfg(feature = "cluster")]
    pub(crate) fn invoke(&self, cx: HostContext, args: Vec<u8>) -> Option<HostFuture> {
        let f = self.find(&cx.function)?;
        Some(f(cx, args))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty() && self.fallback.is_none()
    }

    /// The function registered for the import `function` (fully
    /// qualified): by its exact name, or by the name without the
    /// interface's version.
    fn find(&self, function: &str) -> Option<&Arc<ErasedFn>> {
        self.map
            .get(function)
            .or_else(|| self.map.get(&unversioned(function)))
            .or(self.fallback.as_ref())
    }

    /// Whether a function is registered for the import `function`.
    pub(crate) fn provides(&self, function: &str) -> bool {
        self.find(function).is_some()
    }
}

/// `ns:pkg/iface@1.2.3#f` as `ns:pkg/iface#f`; a world-level name as is.
fn unversioned(function: &str) -> String {
    match function.split_once('#') {
        Some((iface, f)) => {
            let iface = iface.split_once('@').map_or(iface, |(i, _)| i);
            format!("{iface}#{f}")
        }
        None => function.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_with_or_without_the_version() {
        let mut fns = HostFns::default();
        fns.insert(
            "my:app/api#add".into(),
            |_: HostContext, (a, b): (u64, u64)| async move { Ok::<u64, BoxError>(a + b) },
        );
        fns.insert("tick".into(), |_: HostContext, (): ()| async {
            Ok::<(), BoxError>(())
        });
        assert!(fns.provides("my:app/api@1.2.0#add"));
        assert!(fns.provides("my:app/api#add"));
        assert!(fns.provides("tick"));
        assert!(!fns.provides("my:app/api@1.2.0#sub"));
        assert!(!fns.provides("other:app/api@1.2.0#add"));
    }
}
