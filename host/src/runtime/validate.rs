//! Load-time checks of a component against its manifest: it must export the
//! metadata interface and its kind's interface, and import nothing the host
//! does not provide. The linker then checks the types.

use crate::tools::ToolKind;
use wasmtime::Engine;
use wasmtime::component::Component;

/// The interfaces (without version) a tool may import.
pub const ALLOWED_IMPORTS: &[&str] = &[
    "mmsr:search/types",
    "mmsr:search/config",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    // Not wasi:filesystem unless granted (FILESYSTEM_IMPORTS). Not wasi:sockets: raw sockets would bypass the HTTP policy, so a
    // component importing them is refused at load.
];

/// Rust's std imports these when a tool touches files. They are allowed only
/// to a tool whose manifest grants `read_only_dirs`; any other tool has no
/// business with files and is refused at load.
pub const FILESYSTEM_IMPORTS: &[&str] = &["wasi:filesystem/types", "wasi:filesystem/preopens"];

pub const WIT_VERSION: &str = "0.1.0";

/// A component's imports and exports, by name.
#[derive(Clone, Debug)]
pub struct Shape {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

pub fn shape(engine: &Engine, component: &Component) -> Shape {
    let ty = component.component_type();
    Shape {
        imports: ty.imports(engine).map(|(n, _)| n.to_string()).collect(),
        exports: ty.exports(engine).map(|(n, _)| n.to_string()).collect(),
    }
}

fn unversioned(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

pub fn kind_interface(kind: ToolKind) -> String {
    format!("mmsr:search/{}@{WIT_VERSION}", kind.as_str())
}

pub fn metadata_interface() -> String {
    format!("mmsr:search/metadata@{WIT_VERSION}")
}

impl Shape {
    /// The kind whose interface this component exports, if exactly one.
    pub fn exported_kind(&self) -> Option<ToolKind> {
        let kinds: Vec<ToolKind> = [
            ToolKind::TextSearch,
            ToolKind::ImageSearch,
            ToolKind::PageReader,
            ToolKind::Summarizer,
        ]
        .into_iter()
        .filter(|k| self.exports.contains(&kind_interface(*k)))
        .collect();
        match kinds.as_slice() {
            [k] => Some(*k),
            _ => None,
        }
    }

    /// Imports outside [`ALLOWED_IMPORTS`] (and [`FILESYSTEM_IMPORTS`] when
    /// files are granted).
    pub fn refused_imports(&self, files_granted: bool) -> Vec<&str> {
        self.imports
            .iter()
            .map(String::as_str)
            .filter(|i| {
                let name = unversioned(i);
                !(ALLOWED_IMPORTS.contains(&name)
                    || files_granted && FILESYSTEM_IMPORTS.contains(&name))
            })
            .collect()
    }

    /// Whether this component can serve as a `kind` tool (with `read_only_dirs`
    /// granted or not); the error names the missing export or the refused import.
    pub fn check(&self, kind: ToolKind, files_granted: bool) -> Result<(), String> {
        for needed in [metadata_interface(), kind_interface(kind)] {
            if !self.exports.contains(&needed) {
                let found = match self.exported_kind() {
                    Some(k) => format!(" (it is a {k} tool, world {k}-tool)"),
                    None => format!(" (exports: {})", self.exports.join(", ")),
                };
                return Err(format!(
                    "does not export `{needed}` required by world {kind}-tool{found}"
                ));
            }
        }
        let refused = self.refused_imports(files_granted);
        if !refused.is_empty() {
            let files_only = refused
                .iter()
                .all(|i| FILESYSTEM_IMPORTS.contains(&unversioned(i)));
            let hint = if files_only {
                "wasi:filesystem is provided only to a tool whose manifest grants read_only_dirs"
            } else {
                "allowed: wasi:http, the WASI p2 basics and mmsr:search/config"
            };
            return Err(format!(
                "imports `{}`, which the host does not provide to this tool ({hint})",
                refused.join("`, `")
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(imports: &[&str], exports: &[&str]) -> Shape {
        Shape {
            imports: imports.iter().map(|s| s.to_string()).collect(),
            exports: exports.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn checks_exports_and_imports() {
        let ok = shape(
            &[
                "wasi:http/types@0.2.12",
                "mmsr:search/config@0.1.0",
                "wasi:io/streams@0.2.0",
            ],
            &["mmsr:search/metadata@0.1.0", "mmsr:search/summarizer@0.1.0"],
        );
        assert_eq!(ok.exported_kind(), Some(ToolKind::Summarizer));
        ok.check(ToolKind::Summarizer, false).unwrap();
        let err = ok.check(ToolKind::TextSearch, false).unwrap_err();
        assert!(
            err.contains("mmsr:search/text-search@0.1.0") && err.contains("summarizer"),
            "{err}"
        );

        let sockets = shape(
            &["wasi:sockets/tcp@0.2.0"],
            &[
                "mmsr:search/metadata@0.1.0",
                "mmsr:search/page-reader@0.1.0",
            ],
        );
        assert!(
            sockets
                .check(ToolKind::PageReader, true)
                .unwrap_err()
                .contains("wasi:sockets/tcp@0.2.0")
        );

        let files = shape(
            &["wasi:filesystem/preopens@0.2.12", "wasi:io/streams@0.2.12"],
            &[
                "mmsr:search/metadata@0.1.0",
                "mmsr:search/page-reader@0.1.0",
            ],
        );
        let err = files.check(ToolKind::PageReader, false).unwrap_err();
        assert!(
            err.contains("wasi:filesystem/preopens@0.2.12") && err.contains("read_only_dirs"),
            "{err}"
        );
        files.check(ToolKind::PageReader, true).unwrap();

        let sneaky = shape(
            &["wasi:http/types@0.2.12", "evil:host/escape@1.0.0"],
            &[
                "mmsr:search/metadata@0.1.0",
                "mmsr:search/page-reader@0.1.0",
            ],
        );
        let err = sneaky.check(ToolKind::PageReader, true).unwrap_err();
        assert!(err.contains("evil:host/escape@1.0.0"), "{err}");

        let no_meta = shape(&[], &["mmsr:search/page-reader@0.1.0"]);
        assert!(
            no_meta
                .check(ToolKind::PageReader, false)
                .unwrap_err()
                .contains("metadata")
        );
    }
}
