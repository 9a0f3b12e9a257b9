//! [`Extensions`]: per-session state that the modules above the session register
//! without the session naming them.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Per-session state of the modules above the session, one value per type, created on first
/// use. The sampling and custom-loss modules register their own types here: the session
/// stores them without naming them, which keeps the module graph acyclic.
#[derive(Default)]
pub(crate) struct Extensions(Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>);

impl Extensions {
    /// The session's value of type `T`, created with `T::default()` on first use.
    pub(crate) fn get_or_default<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = map
            .get(&TypeId::of::<T>())
            .and_then(|v| v.clone().downcast::<T>().ok())
        {
            return value;
        }
        let value = Arc::new(T::default());
        map.insert(TypeId::of::<T>(), value.clone());
        value
    }
}
