//! Graph v1.0 mail for the simulator. (Work in progress.)

use axum::Router;

use super::SimState;
use super::tenant::Tenant;

pub struct MailState {}

impl MailState {
    pub fn new(_tenant: &Tenant, _seed: bool) -> MailState {
        MailState {}
    }
}

pub fn routes() -> Router<SimState> {
    Router::new()
}
