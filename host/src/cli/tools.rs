//! `mmsr-host tools list | inspect | call`: the manifest's tools, any
//! `.wasm` checked as a tool, and one call through the sandboxed host.
use crate::manifest::Manifest;
use crate::runtime::{HostOptions, Inspection, ToolHost};
use crate::tools::{ImageInput, PageText, ToolInvoker, ToolKind};
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const DEFAULT_MANIFEST: &str = "configs/tools.toml";

#[derive(Subcommand, Debug)]
pub enum ToolsCmd {
    /// List the tools of a manifest, loading each (world, imports, metadata).
    List {
        #[arg(long, default_value = DEFAULT_MANIFEST)]
        manifest: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check a .wasm as a tool: world, metadata, imports, and whether the host accepts it.
    Inspect {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Call one tool of the manifest.
    Call(CallArgs),
}

#[derive(Args, Debug)]
pub struct CallArgs {
    /// The tool's name in the manifest.
    pub name: String,
    #[arg(long, default_value = DEFAULT_MANIFEST)]
    pub manifest: PathBuf,
    /// Query for a text search, or the question a summarizer focuses on.
    #[arg(long)]
    pub query: Option<String>,
    /// Image for an image search: an http(s) URL or a local file.
    #[arg(long)]
    pub image: Option<String>,
    /// Page to read (page-reader), or the page's URL (summarizer).
    #[arg(long)]
    pub url: Option<String>,
    /// Text file holding the page a summarizer summarizes.
    #[arg(long)]
    pub page: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    pub top_k: u32,
    #[arg(long, default_value_t = 4000)]
    pub max_chars: u32,
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: ToolsCmd) -> anyhow::Result<ExitCode> {
    let rt = super::runtime()?;
    match cmd {
        ToolsCmd::List { manifest, json } => rt.block_on(list(&manifest, json)),
        ToolsCmd::Inspect { file, json } => rt.block_on(inspect(&file, json)),
        ToolsCmd::Call(args) => rt.block_on(call(args)),
    }
}

async fn list(path: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let manifest = Manifest::load(path)?;
    let host = ToolHost::new(HostOptions::default())?;
    let mut rows = Vec::new();
    let mut all_ok = true;
    for tool in manifest.tools.values() {
        let loaded = host.load_tool(tool).await;
        all_ok &= loaded.is_ok();
        let hosts: Vec<String> = tool
            .allowed_outbound_hosts
            .iter()
            .map(|h| h.to_string())
            .collect();
        rows.push(json!({
            "name": tool.name,
            "kind": tool.kind,
            "wasm": tool.wasm,
            "allowed_outbound_hosts": hosts,
            "secrets": tool.secrets.iter().map(|s| &s.env).collect::<Vec<_>>(),
            "limits": {
                "memory_mib": tool.limits.memory_mib,
                "timeout_ms": tool.limits.timeout_ms,
                "cpu_ms": tool.limits.cpu_budget().as_millis() as u64,
                "response_bytes": tool.limits.response_bytes,
                "concurrency": tool.limits.concurrency,
                "requests_per_second": tool.limits.requests_per_second,
            },
            "status": match &loaded {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("refused: {e:#}"),
            },
            "version": loaded.as_ref().ok().map(|i| i.metadata.version.clone()),
        }));
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<24} {:<13} {:<8} ALLOWED HOSTS",
            "NAME", "KIND", "STATUS"
        );
        for r in &rows {
            let status = r["status"].as_str().unwrap_or_default();
            println!(
                "{:<24} {:<13} {:<8} {}",
                r["name"].as_str().unwrap_or_default(),
                r["kind"].as_str().unwrap_or_default(),
                if status == "ok" { "ok" } else { "REFUSED" },
                r["allowed_outbound_hosts"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(|h| h.as_str())
                        .collect::<Vec<_>>()
                        .join(" "))
                    .unwrap_or_default(),
            );
            if status != "ok" {
                println!("    {status}");
            }
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn inspect(file: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let host = ToolHost::new(HostOptions::default())?;
    let Inspection {
        path,
        world,
        imports,
        exports,
        metadata,
        verdict,
    } = host.inspect(file).await;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "path": path,
                "world": world,
                "imports": imports,
                "exports": exports,
                "metadata": metadata,
                "accepted": verdict.is_ok(),
                "refusal": verdict.as_ref().err(),
            }))?
        );
    } else {
        println!("file:     {}", path.display());
        println!(
            "world:    {}",
            world.as_deref().unwrap_or("(none recognised)")
        );
        if let Some(m) = &metadata {
            println!(
                "metadata: {} {} ({}): {}",
                m.name, m.version, m.kind, m.description
            );
            println!("  config keys:    {}", m.config_keys.join(", "));
            println!("  outbound hosts: {}", m.outbound_hosts.join(", "));
        }
        println!("exports:");
        for e in &exports {
            println!("  {e}");
        }
        println!("imports:");
        for i in &imports {
            println!("  {i}");
        }
        match &verdict {
            Ok(()) => println!("accepted: yes"),
            Err(why) => println!("accepted: NO: {why}"),
        }
    }
    Ok(if verdict.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn call(args: CallArgs) -> anyhow::Result<ExitCode> {
    let manifest = Manifest::load(&args.manifest)?;
    let tool = manifest.get(&args.name).with_context(|| {
        format!(
            "no tool named {:?} in {} (it has: {})",
            args.name,
            args.manifest.display(),
            manifest
                .tools
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let host = ToolHost::new(HostOptions::default())?;
    host.load_tool(tool).await?;
    let name = args.name.as_str();
    let need = |v: &Option<String>, flag: &str| {
        v.clone()
            .with_context(|| format!("tool {name} is a {}: give {flag}", tool.kind))
    };
    let result = match tool.kind {
        ToolKind::TextSearch => {
            let q = need(&args.query, "--query")?;
            host.text_search(name, &q, args.top_k)
                .await
                .map(|r| serde_json::to_value(r).expect("serialisable"))
        }
        ToolKind::ImageSearch => {
            let image = image_input(&need(&args.image, "--image")?)?;
            host.image_search(name, &image, args.top_k).await.map(|r| {
                // Thumbnails as sizes, not byte arrays.
                json!(
                    r.iter()
                        .map(|i| json!({
                            "title": i.title, "page_url": i.page_url,
                            "mime_type": i.mime_type, "thumbnail_bytes": i.thumbnail.len(),
                        }))
                        .collect::<Vec<_>>()
                )
            })
        }
        ToolKind::PageReader => {
            let url = need(&args.url, "--url")?;
            host.read_page(name, &url, args.max_chars)
                .await
                .map(|r| serde_json::to_value(r).expect("serialisable"))
        }
        ToolKind::Summarizer => {
            let q = need(&args.query, "--query")?;
            let page_path = args
                .page
                .as_ref()
                .with_context(|| format!("tool {name} is a summarizer: give --page FILE"))?;
            let text = std::fs::read_to_string(page_path)
                .with_context(|| format!("reading --page {}", page_path.display()))?;
            let page = PageText {
                url: args.url.clone().unwrap_or_default(),
                title: None,
                text,
            };
            host.summarize(name, &q, &page, args.max_chars)
                .await
                .map(|s| json!(s))
        }
    };
    match result {
        Ok(value) => {
            if args.json {
                println!("{}", json!({ "ok": value }));
            } else {
                println!("{}", serde_json::to_string_pretty(&value)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if args.json {
                println!("{}", json!({ "error": e, "message": e.to_string() }));
            } else {
                eprintln!("tool {name} failed: {e}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn image_input(arg: &str) -> anyhow::Result<ImageInput> {
    if arg.starts_with("http://") || arg.starts_with("https://") {
        return Ok(ImageInput {
            url: Some(arg.to_string()),
            ..Default::default()
        });
    }
    let bytes = std::fs::read(arg).with_context(|| format!("reading --image {arg}"))?;
    let format = image::guess_format(&bytes)
        .with_context(|| format!("--image {arg} is not an image this host reads (png, jpeg)"))?;
    Ok(ImageInput {
        url: None,
        bytes: Some(bytes),
        mime_type: Some(format.to_mime_type().to_string()),
    })
}
