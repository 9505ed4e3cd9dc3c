//! Stand-ins for the outside world in tests and benches: fake upstreams on
//! loopback that speak SerpApi, Jina and OpenAI formats with injectable
//! faults, and an in-process scripted [`crate::tools::ToolInvoker`].

mod invoker;
mod upstream;

pub use invoker::{Call, ScriptedInvoker, tiny_png};
pub use upstream::{FakeUpstream, Fault, SeenRequest};
