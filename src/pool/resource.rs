//! [`Resource`]: a handle to a component-model resource that lives in a
//! session's instance (or, for a host function, in the host).

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, Weak};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::session::SessionLink;
use crate::values::RESOURCE_KEY;

/// A handle to a resource that lives in a [`Session`](crate::Session)'s
/// instance: what a call returned for an `own<T>`, to pass back to the
/// session's calls.
///
/// The resource itself never leaves the worker; the handle is an opaque
/// number and the resource type's name ([`type_name`](Resource::type_name)).
/// Pass it by reference (`(&r, ..)`) where a function takes a `borrow<T>`,
/// and by value (`(r, ..)`) where it takes an `own<T>`, which moves the
/// resource into the guest for good.
///
/// Dropping a `Resource` drops the resource in the guest, running its
/// destructor, before the session's next call (or at once with
/// [`Session::drop_resource`](crate::Session::drop_resource)). Dropping it
/// after its session has closed or was lost does nothing.
///
/// A handle is the session's alone: passed to another session's call, or
/// after a call consumed it, it fails that call with
/// [`ErrorKind::ArgumentMismatch`](crate::ErrorKind::ArgumentMismatch),
/// naming the resource, and the session goes on. It is not `Clone`: one
/// handle, one owner:
///
/// ```compile_fail
/// fn twice(r: &wasmpool::Resource) -> wasmpool::Resource {
///     r.clone()
/// }
/// ```
///
/// It is `Serialize` and `Deserialize` so that it can sit anywhere in a
/// call's arguments and results (a record field, a list). A `Resource`
/// read back from elsewhere (say, a value serialized to JSON and read
/// again) still names its resource, but does not drop it when dropped.
///
/// ```no_run
/// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
/// use wasmpool::Resource;
/// let session = pool.session(&job).await?;
/// let a: Resource = session.run("[constructor]counter", (1i64,)).await?;
/// let b: Resource = session.run("[constructor]counter", (2i64,)).await?;
/// assert_eq!(a.type_name(), "counter");
/// let total: i64 = session.run("total", (&a, &b)).await?;
/// drop(a); // the guest drops it before the next call
/// session.drop_resource(b).await?; // the guest drops it now
/// # Ok(()) }
/// ```
pub struct Resource {
    /// A value a host function made (`HostContext::new_resource`),
    /// rather than a session's handle.
    host: bool,
    /// The session that holds it (0 for a host value).
    owner: u64,
    handle: u64,
    type_name: String,
    /// The session, to tell of the drop; `None` when this handle does not
    /// own what it names.
    link: Option<Weak<SessionLink>>,
}

thread_local! {
    /// The session whose call's result this thread reads now: the handles
    /// read in it are that session's.
    static READING_FOR: RefCell<Option<Arc<SessionLink>>> = const { RefCell::new(None) };
}

/// Runs `f`, which reads a call's result, with the handles it reads
/// linked to `link`'s session.
pub(crate) fn reading_for<T>(link: &Arc<SessionLink>, f: impl FnOnce() -> T) -> T {
    struct Reset(Option<Arc<SessionLink>>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let before = self.0.take();
            READING_FOR.with(|r| *r.borrow_mut() = before);
        }
    }
    let before = READING_FOR.with(|r| r.borrow_mut().replace(link.clone()));
    let _reset = Reset(before);
    f()
}

impl Resource {
    /// The resource type's name, as the component's WIT names it
    /// (`"counter"`).
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// A handle of a host value, as a host function returns it.
    pub(crate) fn host(handle: u64, type_name: &str) -> Resource {
        Resource {
            host: true,
            owner: 0,
            handle,
            type_name: type_name.to_string(),
            link: None,
        }
    }

    pub(crate) fn is_host(&self) -> bool {
        self.host
    }

    pub(crate) fn owner(&self) -> u64 {
        self.owner
    }

    pub(crate) fn handle(&self) -> u64 {
        self.handle
    }

    /// Forgets the session: dropping this handle drops nothing.
    pub(crate) fn detach(&mut self) {
        self.link = None;
    }
}

impl Drop for Resource {
    fn drop(&mut self) {
        if let Some(link) = self.link.take().and_then(|l| l.upgrade()) {
            link.dropped(self.handle);
        }
    }
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Resource");
        d.field("type_name", &self.type_name);
        if self.host {
            d.field("host", &self.handle);
        } else {
            d.field("session", &self.owner)
                .field("handle", &self.handle);
        }
        d.finish()
    }
}

impl Serialize for Resource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry(
            RESOURCE_KEY,
            &(self.host, self.owner, self.handle, &self.type_name),
        )?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Resource, D::Error> {
        d.deserialize_map(ResourceVisitor)
    }
}

struct ResourceVisitor;

impl<'de> Visitor<'de> for ResourceVisitor {
    type Value = Resource;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a resource handle")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Resource, A::Error> {
        let key: Option<String> = a.next_key()?;
        if key.as_deref() != Some(RESOURCE_KEY) {
            return Err(de::Error::custom("expected a resource handle"));
        }
        let (host, owner, handle, type_name): (bool, u64, u64, String) = a.next_value()?;
        if a.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("expected a resource handle"));
        }
        // A handle of the session whose result is being read owns its
        // resource; any other only names one.
        let link = READING_FOR.with(|r| {
            r.borrow()
                .as_ref()
                .filter(|l| !host && l.id == owner)
                .map(Arc::downgrade)
        });
        Ok(Resource {
            host,
            owner,
            handle,
            type_name,
            link,
        })
    }
}
