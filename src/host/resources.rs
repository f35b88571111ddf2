//! The values host functions serve as resources
//! ([`HostContext::new_resource`](crate::HostContext::new_resource)): a
//! table per plain call, or per session, that the guest's handles index.

use crate::locks::Locked as _;
use std::any::Any;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// The name of the host function a worker calls when its guest drops a
/// handle of a host value; no import can have it.
pub(crate) const DROP_FUNCTION: &str = "\u{1}wasmpool:drop-resource";

type Value = std::sync::Arc<dyn Any + Send + Sync>;

/// Host values the guest holds handles to, by handle.
#[derive(Default)]
pub(crate) struct HostTable {
    next: AtomicU32,
    values: Mutex<HashMap<u32, (Value, String)>>,
}

impl HostTable {
    /// Keeps `value`, a resource of type `type_name`; returns its handle,
    /// or `None` once 2^32 handles have been given out.
    pub(crate) fn insert(&self, value: Value, type_name: &str) -> Option<u32> {
        let id = self.next.fetch_add(1, Ordering::Relaxed).checked_add(1)?;
        self.values
            .locked()
            .insert(id, (value, type_name.to_string()));
        Some(id)
    }

    /// The value of handle `id`.
    pub(crate) fn get(&self, id: u32) -> Option<(Value, String)> {
        self.values.locked().get(&id).cloned()
    }

    /// The guest dropped handle `id`: the value goes (outside the lock,
    /// since its `Drop` is the user's).
    pub(crate) fn remove(&self, id: u32) {
        let gone = self.values.locked().remove(&id);
        drop(gone);
    }

    /// Drops every value.
    pub(crate) fn clear(&self) {
        let gone = std::mem::take(&mut *self.values.locked());
        drop(gone);
    }
}

/// The resource type an import's canonical name is of: `kv` for
/// `[constructor]kv`, `[method]kv.get` and `[static]kv.open`, with or
/// without the interface before a `#`.
pub(crate) fn resource_of(function: &str) -> Option<&str> {
    let name = function.rsplit_once('#').map_or(function, |(_, f)| f);
    if let Some(t) = name.strip_prefix("[constructor]") {
        return Some(t);
    }
    let rest = name
        .strip_prefix("[method]")
        .or_else(|| name.strip_prefix("[static]"))?;
    rest.split_once('.').map(|(t, _)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_give_their_resource() {
        assert_eq!(resource_of("pkg:x/store#[constructor]kv"), Some("kv"));
        assert_eq!(resource_of("[method]kv.get"), Some("kv"));
        assert_eq!(resource_of("pkg:x/store@1.0.0#[static]kv.open"), Some("kv"));
        assert_eq!(resource_of("pkg:x/store#get"), None);
        assert_eq!(resource_of("[method]nodot"), None);
    }

    #[test]
    fn values_go_when_dropped_or_cleared() {
        let table = HostTable::default();
        let a = table.insert(std::sync::Arc::new(1u8), "a").unwrap();
        let b = table.insert(std::sync::Arc::new(2u8), "b").unwrap();
        assert_ne!(a, b);
        assert_eq!(table.get(a).map(|(_, n)| n), Some("a".into()));
        table.remove(a);
        assert!(table.get(a).is_none());
        table.clear();
        assert!(table.get(b).is_none());
    }
}
