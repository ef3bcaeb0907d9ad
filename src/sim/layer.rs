//! Per-request behaviour of the simulated Graph service: counting, fault
//! injection and Microsoft's limits. (Work in progress: pass-through.)

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::SimState;

/// Applied to every Graph request, including the inner requests of
/// `$batch` (which carry the [`super::InnerRequest`] extension).
pub async fn graph_layer(State(_state): State<SimState>, request: Request, next: Next) -> Response {
    next.run(request).await
}
