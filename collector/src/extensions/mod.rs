//! Extensions: components outside the data path.

pub mod file_storage;
pub mod health_check;
