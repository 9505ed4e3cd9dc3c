//! mmsr-host: the wasmtime host for sandboxed search tools, the search
//! pipelines the trainer sees, the offline search engine, and the CLI.

pub mod bench;
pub mod cache;
pub mod cli;
pub mod fakes;
pub mod judge;
pub mod manifest;
pub mod net;
pub mod pipeline;
pub mod reliability;
pub mod runtime;
pub mod search_engine;
pub mod tools;
pub mod wire;
