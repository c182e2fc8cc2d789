//! `torronto node --config FILE`: a TOML file that holds the node's flags, for services.
//!
//! Every key is a `torronto node` flag spelled without its dashes (`listen = "0.0.0.0:7001"`,
//! `insert-from = ["/srv/in"]`, `join = true`; `insert_from` works too). The file's flags
//! go in front of the command line's, so a flag given on the command line wins over the
//! file (a repeatable one adds to it). Relative paths in the file are read from the
//! file's folder, as a service manager starts the node wherever it likes.
//!
//! The file becomes arguments before clap sees them: one parser, one set of rules and
//! error messages for both ways of saying the same thing.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Keys whose values are paths, resolved against the config file's folder.
const PATH_KEYS: &[&str] = &["dir", "peers", "secret", "web-root", "insert-from"];

/// The command line with the `--config FILE` of a `node` command replaced by the flags
/// the file holds. `flags` are the long flags `torronto node` takes (to name an unknown
/// key in the error, not as clap's later "unexpected argument").
pub fn expand(args: Vec<OsString>, flags: &[(String, bool)]) -> anyhow::Result<Vec<OsString>> {
    if args.get(1).and_then(|a| a.to_str()) != Some("node") {
        return Ok(args);
    }
    let Some((at, path, taken)) = find_config(&args) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read config {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let from_file = to_args(&text, &base, flags).with_context(|| format!("config {}", path.display()))?;
    let mut out = args[..2].to_vec();
    out.extend(from_file.into_iter().map(OsString::from));
    out.extend(args[2..at].iter().cloned());
    out.extend(args[at + taken..].iter().cloned());
    Ok(out)
}

/// Where `--config FILE` or `--config=FILE` is: its index, the file, and how many
/// arguments it takes.
fn find_config(args: &[OsString]) -> Option<(usize, PathBuf, usize)> {
    for (i, arg) in args.iter().enumerate().skip(2) {
        let arg = arg.to_str()?;
        if arg == "--" {
            return None;
        }
        if arg == "--config" {
            return Some((i, PathBuf::from(args.get(i + 1)?), 2));
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some((i, PathBuf::from(path), 1));
        }
    }
    None
}

/// The flags a config file's text says (keys in name order: each flag is given once,
/// so order does not matter).
fn to_args(text: &str, base: &Path, flags: &[(String, bool)]) -> anyhow::Result<Vec<String>> {
    let table: toml::Table = text.parse()?;
    let mut args = Vec::new();
    for (key, value) in &table {
        let name = key.replace('_', "-");
        let Some(&(_, takes_value)) = flags.iter().find(|(flag, _)| *flag == name) else {
            let known: Vec<&str> = flags.iter().map(|(f, _)| f.as_str()).filter(|f| *f != "config").collect();
            bail!("unknown key `{key}`; `torronto node` takes {}", known.join(", "));
        };
        if name == "config" {
            bail!("`config` cannot name another config file");
        }
        let flag = format!("--{name}");
        match value {
            toml::Value::Boolean(on) if !takes_value => {
                if *on {
                    args.push(flag);
                }
            }
            _ if !takes_value => bail!("`{key}` is a switch: write `{key} = true` or `{key} = false`"),
            toml::Value::Array(items) => {
                for item in items {
                    args.push(flag.clone());
                    args.push(scalar(key, item, &name, base)?);
                }
            }
            value => {
                args.push(flag);
                args.push(scalar(key, value, &name, base)?);
            }
        }
    }
    Ok(args)
}

fn scalar(key: &str, value: &toml::Value, name: &str, base: &Path) -> anyhow::Result<String> {
    let text = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(x) => x.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        _ => bail!("`{key}` takes a string or a number (or a list of them, if it may be repeated)"),
    };
    if PATH_KEYS.contains(&name) && Path::new(&text).is_relative() {
        return Ok(base.join(text).to_string_lossy().into_owned());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Vec<(String, bool)> {
        [("listen", true), ("dir", true), ("join", false), ("insert-from", true), ("config", true)]
            .iter()
            .map(|(f, v)| (f.to_string(), *v))
            .collect()
    }

    fn expand_str(args: &[&str]) -> anyhow::Result<Vec<String>> {
        let args = args.iter().map(OsString::from).collect();
        Ok(expand(args, &flags())?.into_iter().map(|a| a.into_string().unwrap()).collect())
    }

    #[test]
    fn the_file_becomes_flags_before_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("torronto.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:7001\"\ndir = \"data\"\njoin = true\ninsert_from = [\"/a\", \"b\"]\n",
        )
        .unwrap();
        let got =
            expand_str(&["torronto", "node", "--config", file.to_str().unwrap(), "--listen", "127.0.0.1:9"]).unwrap();
        let base = dir.path().to_str().unwrap();
        let want = vec![
            "torronto".to_owned(),
            "node".into(),
            "--dir".into(),
            format!("{base}/data"),
            "--insert-from".into(),
            "/a".into(),
            "--insert-from".into(),
            format!("{base}/b"),
            "--join".into(),
            "--listen".into(),
            "0.0.0.0:7001".into(),
            "--listen".into(),
            "127.0.0.1:9".into(),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_false_switch_is_left_out_and_other_commands_are_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "join = false\n").unwrap();
        let arg = format!("--config={}", file.display());
        assert_eq!(expand_str(&["torronto", "node", &arg]).unwrap(), ["torronto", "node"]);
        assert_eq!(expand_str(&["torronto", "query", &arg]).unwrap(), ["torronto", "query", &arg]);
    }

    #[test]
    fn bad_files_are_refused_with_the_key_or_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        let fails = |text: &str| {
            std::fs::write(&file, text).unwrap();
            format!("{:#}", expand_str(&["torronto", "node", "--config", file.to_str().unwrap()]).unwrap_err())
        };
        assert!(fails("lisen = \"x\"\n").contains("unknown key `lisen`; `torronto node` takes listen, dir"));
        assert!(fails("join = \"yes\"\n").contains("`join` is a switch"));
        assert!(fails("listen = \n").contains("line 1"));
        assert!(fails("dir = { a = 1 }\n").contains("`dir` takes a string"));
        assert!(fails("config = \"other.toml\"\n").contains("cannot name another config file"));
        std::fs::remove_file(&file).unwrap();
        assert!(fails_missing(&file).contains("cannot read config"));
    }

    fn fails_missing(file: &Path) -> String {
        format!("{:#}", expand_str(&["torronto", "node", "--config", file.to_str().unwrap()]).unwrap_err())
    }
}
