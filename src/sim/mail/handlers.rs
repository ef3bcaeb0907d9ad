//! The simulated Graph mail routes' handlers, gathered for `routes()`.

pub(super) use super::attachments::*;
pub(super) use super::controls::*;
pub(super) use super::delta::*;
pub(super) use super::folder_delta::*;
pub(super) use super::folders::*;
pub(super) use super::messages::*;
pub(super) use super::send::*;
