//! Extensions: components outside the data path.

pub mod basicauth;
pub mod bearertokenauth;
pub mod file_storage;
pub mod health_check;
pub mod oidc;
