//! `hameau generate` (hidden): the man pages and shell completions, made from the clap
//! definitions at package time (`scripts/package.sh`), so that they always describe the
//! program they ship with.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap_complete::Shell;

#[derive(clap::Subcommand)]
pub enum GenerateCommand {
    /// Writes `hameau.8` and one page per subcommand (`hameau-serve.8`, …) into DIR.
    Man {
        /// The directory to write into.
        dir: PathBuf,
    },
    /// Writes the completions for bash (`hameau`), zsh (`_hameau`) and fish (`hameau.fish`)
    /// into DIR, named as each shell's vendor directory expects.
    Completions {
        /// The directory to write into.
        dir: PathBuf,
    },
}

/// Section 8: system administration commands (a daemon and its administration).
const MAN_SECTION: &str = "8";

/// Runs a `generate` command on `command`, the whole program's clap definition.
pub fn run(generate: GenerateCommand, command: clap::Command) -> anyhow::Result<()> {
    match generate {
        GenerateCommand::Man { dir } => write_man_pages(command, &dir),
        GenerateCommand::Completions { dir } => write_completions(command, &dir),
    }
}

/// One page for the program and one per visible subcommand at every level, each with its
/// own options, named as git names them (`hameau-tenant-create.8`): clap, once built, gives
/// each subcommand that display name and its whole command line (`hameau tenant create`) as
/// its synopsis, and each page lists its subcommands' pages.
fn write_man_pages(command: clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut command = command.disable_help_subcommand(true);
    command.build();
    // The command tree is the program's own definition, a few levels deep: a work list, not
    // recursion, all the same.
    let mut pending = vec![command];
    while let Some(command) = pending.pop() {
        pending.extend(command.get_subcommands().filter(|sub| !sub.is_hide_set()).cloned());
        let name = command.get_display_name().unwrap_or_else(|| command.get_name()).to_string();
        // The NAME line is `page - summary`, what whatis and apropos index: a command without
        // a doc comment gets its command line as summary.
        let command = match command.get_about() {
            Some(_) => command,
            None => {
                let line = command.get_bin_name().unwrap_or(&name).to_string();
                command.about(format!("The `{line}` command"))
            }
        };
        write_page(command, &dir.join(format!("{name}.{MAN_SECTION}")))?;
    }
    Ok(())
}

fn write_page(command: clap::Command, path: &Path) -> anyhow::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .section(MAN_SECTION)
        .manual("Hameau")
        .render(&mut page)
        .with_context(|| format!("rendering {}", path.display()))?;
    std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))
}

fn write_completions(command: clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut command = without_hidden_subcommands(command);
    for (shell, file_name) in [(Shell::Bash, "hameau"), (Shell::Zsh, "_hameau"), (Shell::Fish, "hameau.fish")] {
        let path = dir.join(file_name);
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command, "hameau", &mut script);
        std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The program's command without its hidden subcommands (`generate`): clap_complete offers
/// hidden subcommands too, and clap cannot remove one, so the top level is rebuilt from the
/// built command's arguments (`--help` and `--version` included) and visible subcommands.
fn without_hidden_subcommands(command: clap::Command) -> clap::Command {
    // Without the `help` subcommand either: it would list every subcommand, hidden ones too.
    let mut command = command.disable_help_subcommand(true);
    command.build();
    clap::Command::new("hameau")
        .version(env!("CARGO_PKG_VERSION"))
        .disable_help_flag(true)
        .disable_version_flag(true)
        .disable_help_subcommand(true)
        .args(command.get_arguments().cloned())
        .subcommands(command.get_subcommands().filter(|sub| !sub.is_hide_set()).cloned())
}

#[cfg(test)]
mod tests;
