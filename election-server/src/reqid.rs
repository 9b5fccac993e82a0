//! The id of the request being served, carried by every log line of the
//! request and sent along with every call it makes to peers (see
//! `access`, which takes it from the caller or makes one). Below every other
//! module: adapters read it, routes set it.

use std::future::Future;

tokio::task_local! {
    pub(crate) static REQ_ID: String;
}

/// The id of the request being served, if any.
pub fn current() -> Option<String> {
    REQ_ID.try_with(Clone::clone).ok()
}

/// Runs `fut` (typically spawned) under the current request id.
pub fn inherit<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    with_id(current(), fut)
}

/// Runs `fut` under `id` (taken with [`current`] before a blocking task,
/// which does not inherit it).
pub fn with_id<F: Future>(id: Option<String>, fut: F) -> impl Future<Output = F::Output> {
    match id {
        Some(id) => futures::future::Either::Left(REQ_ID.scope(id, fut)),
        None => futures::future::Either::Right(fut),
    }
}

/// A fresh request id.
pub fn new_id() -> String {
    election_client::new_request_id("req")
}
