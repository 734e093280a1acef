//! Typed records, their values and the rules that hold for them. No HTTP, no storage engine.

pub mod access;
pub mod batch;
pub mod catalog;
pub mod email;
pub mod enums;
pub mod error;
pub mod events;
pub mod ids;
pub mod layout;
pub mod patch;
pub mod record;
pub mod registration;
pub mod rules;
pub mod search;
pub mod tenant;
pub mod time;
pub mod transfer;
pub mod values;
pub mod webhook;
