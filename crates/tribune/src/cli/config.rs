//! `tribune config ...`: config entries.

use super::Io;
use clap::{Args, Subcommand};
use std::io::Read;
use tribune_model::{decode_text, WireEntry};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check one config entry file offline (HCL or JSON; `-` reads stdin).
    Validate(ValidateArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Path of the entry file, or `-` for standard input.
    pub file: String,
    /// On success, print the normalized entry as canonical JSON instead of a message.
    #[arg(long)]
    pub canonical: bool,
}

pub fn run(cmd: ConfigCommand, io: &mut Io<'_>) -> u8 {
    match cmd {
        ConfigCommand::Validate(args) => validate(&args, io),
    }
}

/// Reads a file argument the way Consul's CLI does (`-` is stdin).
pub fn load_input(path: &str) -> Result<String, String> {
    if path == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("Failed to read stdin: {e}"))?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("Failed to read file: {e}"))
    }
}

fn validate(args: &ValidateArgs, io: &mut Io<'_>) -> u8 {
    let text = match load_input(&args.file) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(io.err, "Failed to load data: {e}");
            return 1;
        }
    };
    let wire = match decode_text(&text) {
        Ok(w) => w,
        Err(e) => {
            let _ = write!(io.err, "Failed to decode config entry input: {e}");
            if !e.to_string().ends_with('\n') {
                let _ = writeln!(io.err);
            }
            return 1;
        }
    };
    let label = wire_label(&wire);
    match wire.into_entry() {
        Ok(entry) => {
            if args.canonical {
                let pretty = serde_json::to_string_pretty(&entry).unwrap_or_default();
                let _ = writeln!(io.out, "{pretty}");
            } else {
                let _ = writeln!(
                    io.out,
                    "Config entry is valid: {}/{}",
                    entry.kind(),
                    entry.name()
                );
            }
            0
        }
        Err(errors) => {
            let _ = writeln!(io.err, "Config entry {label} is invalid:");
            for e in &errors.0 {
                let _ = writeln!(io.err, "  * {}", e.with_path());
            }
            1
        }
    }
}

fn wire_label(w: &WireEntry) -> String {
    let (kind, name) = match w {
        WireEntry::ServiceDefaults(e) => ("service-defaults", e.name.as_deref()),
        WireEntry::ProxyDefaults(e) => ("proxy-defaults", e.name.as_deref()),
        WireEntry::ServiceIntentions(e) => ("service-intentions", e.name.as_deref()),
        WireEntry::JwtProvider(e) => ("jwt-provider", e.name.as_deref()),
    };
    format!("{kind}/{}", name.unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use crate::cli::tests::run_args;

    fn example(name: &str) -> String {
        format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn validate_prints_valid_for_the_seed_provider() {
        let (code, out, err) = run_args(&["config", "validate", &example("okta-provider.hcl")]);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (0, "Config entry is valid: jwt-provider/okta\n", "")
        );
    }

    #[test]
    fn validate_reports_every_error_with_its_path() {
        let dir = std::env::temp_dir().join(format!("tribune-validate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bad.hcl");
        std::fs::write(
            &f,
            r#"Kind = "jwt-provider"
Name = "bad"
JSONWebKeySet { Remote { URI = "" } }
Locations = [ { Header { } }, { Cookie { Name = "c" } QueryParam { Name = "q" } } ]
Forwarding { PadForwardPayloadHeader = true }
"#,
        )
        .unwrap();
        let (code, out, err) = run_args(&["config", "validate", f.to_str().unwrap()]);
        assert_eq!(code, 1);
        assert_eq!(out, "");
        assert_eq!(
            err,
            "Config entry jwt-provider/bad is invalid:\n\
             \x20 * JSONWebKeySet.Remote.URI: Remote JWKS URI is required\n\
             \x20 * Locations[0].Header.Name: JWT location header name must be specified\n\
             \x20 * Locations[1]: must set exactly one of: JWT location header, query param or cookie\n\
             \x20 * Forwarding.HeaderName: Header name required for forwarding config\n"
        );
    }

    #[test]
    fn validate_reports_decode_errors_like_consul() {
        let dir = std::env::temp_dir().join(format!("tribune-validate-d-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("unknown.json");
        std::fs::write(
            &f,
            r#"{"Kind":"jwt-provider","Name":"x","Bogus":1,"Namespace":"ns"}"#,
        )
        .unwrap();
        let (code, _, err) = run_args(&["config", "validate", f.to_str().unwrap()]);
        assert_eq!(code, 1);
        assert_eq!(
            err,
            "Failed to decode config entry input: 2 errors occurred:\n\
             \t* invalid config key \"Bogus\"\n\
             \t* invalid config key \"Namespace\", namespaces are a consul enterprise feature\n\n"
        );
    }

    #[test]
    fn validate_missing_file_fails_to_load() {
        let (code, _, err) = run_args(&["config", "validate", "/nonexistent/x.hcl"]);
        assert_eq!(code, 1);
        assert!(
            err.starts_with("Failed to load data: Failed to read file:"),
            "{err}"
        );
    }

    #[test]
    fn validate_canonical_prints_normalized_json() {
        let (code, out, _) = run_args(&[
            "config",
            "validate",
            "-canonical",
            &example("okta-provider.hcl"),
        ]);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["Kind"], "jwt-provider");
        assert_eq!(v["ClockSkewSeconds"], 30);
        assert_eq!(
            v["JSONWebKeySet"]["Remote"]["CacheDuration"],
            1_800_000_000_000_i64
        );
    }
}
