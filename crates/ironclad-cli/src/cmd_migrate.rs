//! `ironclad migrate [--status]`: apply schema migrations under the data
//! directory lock, or report the schema state without changing anything.

use clap::Args;
use ironclad::lockfile::DataDirLock;
use ironclad::store::sqlite::{schema_status, SqliteOptions, SqliteStore, SCHEMA_VERSION};
use rusqlite::{Connection, OpenFlags};

use crate::{journal_config, output, Cli, CmdResult, ExitCode};

/// Arguments of `migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Only report the database and binary schema versions and pending steps.
    #[arg(long)]
    pub status: bool,
}

/// Runs `migrate`.
pub async fn run(cli: &Cli, args: &MigrateArgs) -> CmdResult {
    let config = journal_config(cli, Default::default());
    let path = config.db_path();
    if args.status {
        // A 0-byte or foreign file is refused here as opening refuses it,
        // not reported as "version 0" (which `migrate` would not fix).
        if !SqliteStore::check_file(&path)? {
            let status = serde_json::json!({
                "db_version": 0, "binary_version": SCHEMA_VERSION, "exists": false
            });
            if cli.json {
                output::json_line(&status)?;
            } else {
                println!(
                    "no database at {} yet; binary schema version {SCHEMA_VERSION}",
                    path.display()
                );
            }
            return Ok(ExitCode::Ok);
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let status = schema_status(&conn)?;
        if cli.json {
            output::json_line(&status)?;
        } else {
            println!("database schema version: {}", status.db_version);
            println!("binary schema version:   {}", status.binary_version);
            if status.legacy_v0 {
                println!("legacy pre-version (v0) layout detected: `ironclad migrate` will carry it over");
            }
            for (v, name, at_us) in &status.applied {
                println!(
                    "  applied  v{v}  {name}  (at {})",
                    output::rfc3339_utc_us(*at_us)
                );
            }
            for (v, name) in &status.pending {
                println!("  pending  v{v}  {name}");
            }
            if status.db_version > status.binary_version {
                println!("the database is newer than this binary: upgrade ironclad");
            }
        }
        return Ok(ExitCode::Ok);
    }
    let _lock = DataDirLock::acquire(&config.data_dir)?;
    let applied = SqliteStore::migrate_in_place(&SqliteOptions::from_config(&config))?;
    if cli.json {
        output::json_line(&serde_json::json!({"applied": applied, "version": SCHEMA_VERSION}))?;
    } else if applied.is_empty() {
        println!("schema already at version {SCHEMA_VERSION}; nothing to do");
    } else {
        let steps: Vec<String> = applied.iter().map(|v| format!("v{v}")).collect();
        println!(
            "applied migrations {}; schema now at version {SCHEMA_VERSION}",
            steps.join(", ")
        );
    }
    Ok(ExitCode::Ok)
}
