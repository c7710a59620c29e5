//! What can go wrong inside a core. Refusals of requests are replies
//! (`Response::Error`), not errors; these are the failures of the core's
//! own work, each saying whether anything changed.

/// Errors of the core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// The storage failed. Every storage call is atomic: the operation it
    /// was part of did not happen.
    #[error("storage: {reason}")]
    Storage { reason: String },
    /// A stored record of the core's own (the ring) does not decode;
    /// nothing changed.
    #[error("stored {what} is unreadable: {reason}")]
    Meta { what: &'static str, reason: String },
    /// A stored object does not decode or breaks the clock's invariants.
    /// It is never served: a read removes it, so that anti-entropy brings
    /// the key back from a replica; a merge replaces it.
    #[error("stored object of {key} is invalid: {reason}")]
    InvalidObject { key: String, reason: String },
    /// Something would not encode; nothing was written.
    #[error("{what} does not encode: {reason}")]
    Encode { what: &'static str, reason: String },
    /// A bucket or key past its bounds; nothing changed.
    #[error("bad key: {reason}")]
    BadKey { reason: String },
    /// A peer answered an exchange out of turn or refused it. What the
    /// exchange merged before stays merged (merges are safe to repeat);
    /// the next exchange starts over.
    #[error("exchange: {reason}")]
    Exchange { reason: String },
    /// The staged ring changes cannot be committed; nothing changed.
    #[error("{reason}")]
    PlanRefused { reason: String },
    /// A configuration value is out of bounds; nothing was started.
    #[error("{reason}")]
    Config { reason: String },
}

impl From<norn_storage::StorageError> for CoreError {
    fn from(e: norn_storage::StorageError) -> Self {
        CoreError::Storage {
            reason: e.to_string(),
        }
    }
}

impl CoreError {
    pub(crate) fn exchange(reason: impl Into<String>) -> CoreError {
        CoreError::Exchange {
            reason: reason.into(),
        }
    }
}
