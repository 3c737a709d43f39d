#![allow(dead_code)]
pub mod services;
