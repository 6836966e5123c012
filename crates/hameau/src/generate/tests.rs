use super::*;

fn program() -> clap::Command {
    <crate::Cli as clap::CommandFactory>::command()
}

#[test]
fn man_pages_one_per_visible_command_each_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    run(GenerateCommand::Man { dir: dir.path().to_path_buf() }, program()).unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    for expected in ["hameau.8", "hameau-serve.8", "hameau-tenant-create.8", "hameau-config-check.8"] {
        assert!(names.iter().any(|name| name == expected), "{expected} missing from {names:?}");
    }
    for name in &names {
        assert!(!name.starts_with("hameau-generate") && !name.contains("-help"), "{name}: hidden or help page");
        let page = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(page.contains(".TH "), "{name}: no title");
        // whatis reads `NAME` as `page \- summary`.
        // roff escapes the hyphens.
        let stem = name.trim_end_matches(".8").replace('-', "\\-");
        let after_name = page.split(".SH NAME\n").nth(1).unwrap_or_else(|| panic!("{name}: no NAME section"));
        let name_line = after_name.lines().next().unwrap();
        assert!(name_line.starts_with(&format!("{stem} \\- ")), "{name}: NAME line {name_line:?}");
    }
}

#[test]
fn completions_for_three_shells_without_the_hidden_command() {
    let dir = tempfile::tempdir().unwrap();
    run(GenerateCommand::Completions { dir: dir.path().to_path_buf() }, program()).unwrap();
    for file_name in ["hameau", "_hameau", "hameau.fish"] {
        let script = std::fs::read_to_string(dir.path().join(file_name)).unwrap();
        assert!(script.contains("tenant") && script.contains("config"), "{file_name}: commands missing");
        // The command as each shell names it: bash `hameau__subcmd__tenant`, zsh
        // `(tenant)`, fish `-a "tenant"`.
        for (shown, hidden) in [("hameau__subcmd__tenant", "hameau__subcmd__generate"), ("(tenant)", "(generate)")]
            .into_iter()
            .chain([("-a \"tenant\"", "-a \"generate\"")])
        {
            if script.contains(shown) {
                assert!(!script.contains(hidden), "{file_name}: offers the hidden generate command");
            }
        }
        assert!(!script.contains("'generate:") && !script.contains("\"generate:"), "{file_name}: generate listed");
    }
}
