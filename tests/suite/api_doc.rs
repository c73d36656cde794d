//! Keeps `docs/api.md` true: every route its table lists is called against
//! the real binary and answers with a status the table gives it (never the
//! `404 not_found` of an unknown route, never a `405`); every route the
//! router declares in `src/web/` is in the table; and every error code the
//! code in `src/web/` can answer is named on the page.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::process::ServerProcess;

const API_DOC: &str = "docs/api.md";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One row of the route table: "`GET /orders/{N}`" and the statuses listed.
#[derive(Debug)]
struct Route {
    method: String,
    path: String,
    statuses: BTreeSet<u16>,
}

/// The rows of the doc's tables whose first cell is "`METHOD /path`".
fn documented_routes(doc: &str) -> Vec<Route> {
    doc.lines()
        .filter_map(|line| {
            let row = line.trim().strip_prefix('|')?.strip_suffix('|')?;
            let cells: Vec<&str> = row.split('|').collect();
            let first = cells.first()?.trim().strip_prefix('`')?.strip_suffix('`')?;
            let (method, path) = first.split_once(' ')?;
            if !path.starts_with('/') || !method.chars().all(|c| c.is_ascii_uppercase()) {
                return None;
            }
            let statuses = cells
                .last()?
                .split('`')
                .filter_map(|s| s.parse::<u16>().ok())
                .collect();
            Some(Route {
                method: method.to_owned(),
                path: path.to_owned(),
                statuses,
            })
        })
        .collect()
}

/// `/orders/{ticket}` and `/orders/{N}` are the same route.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path, text));
        }
    }
    out
}

/// The text of a call whose `(` is at `open`, up to its matching `)`,
/// skipping what is inside string literals.
fn call_at(text: &str, open: usize) -> &str {
    let (mut depth, mut in_string, mut escaped) = (0, false, false);
    for (i, c) in text[open..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '(' if !in_string => depth += 1,
            ')' if !in_string => {
                depth -= 1;
                if depth == 0 {
                    return &text[open..open + i + 1];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced call at byte {open}")
}

/// `("GET", "/orders/{ticket}")` for every `.route(...)` in `src/web/`.
fn router_routes() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (file, text) in sources(&repo().join("src/web")) {
        for (at, _) in text.match_indices(".route(") {
            let call = call_at(&text, at + ".route".len());
            let path = call
                .split('"')
                .nth(1)
                .unwrap_or_else(|| panic!("{}: a route without a path: {call}", file.display()));
            let handler = &call[call.find(',').expect("a route has a handler")..];
            let mut methods = Vec::new();
            for method in ["get", "post", "put", "patch", "delete"] {
                if handler.contains(&format!("{method}(")) {
                    methods.push(method.to_uppercase());
                }
            }
            // The embedded pages: a `page!` is a GET.
            if handler.contains("page!(") {
                methods.push("GET".into());
            }
            assert!(
                !methods.is_empty(),
                "{}: cannot tell the method of {call}; teach tests/suite/api_doc.rs",
                file.display()
            );
            for method in methods {
                routes.insert((method, path.to_owned()));
            }
        }
    }
    assert!(!routes.is_empty(), "no `.route(` found in src/web");
    routes
}

/// The string literals of Rust source, each with the code before it
/// (comments blanked out, so quotes in them do not count).
fn literals(text: &str) -> Vec<(String, String)> {
    let mut code = String::with_capacity(text.len());
    let mut found = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
                code.push(' ');
            }
            '"' => {
                let at = code.len();
                let mut literal = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                            literal.push('?');
                        }
                        '"' => break,
                        c => literal.push(c),
                    }
                }
                code.push('"');
                code.push_str(&literal);
                code.push('"');
                found.push((at, literal));
            }
            c => code.push(c),
        }
    }
    found
        .into_iter()
        .map(|(at, literal)| (code[..at].to_owned(), literal))
        .collect()
}

/// The error codes `src/web/` can answer: a snake_case literal right after
/// `code:`, `"error":` or `(StatusCode::NAME,`, or a match arm's literal
/// holding an underscore (`=> "bad_request"`; the readiness values such as
/// `=> "none"` are not codes).
fn error_codes() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    for (_, text) in sources(&repo().join("src/web")) {
        for (before, literal) in literals(&text) {
            let before = before.trim_end();
            let last = before.rsplit(['(', '{', '[', ';']).next().unwrap_or("");
            let is_code = before.ends_with("code:")
                || before.ends_with("\"error\":")
                || (before.ends_with("=>") && literal.contains('_'))
                || (last.trim().starts_with("StatusCode::") && before.ends_with(','));
            if is_code
                && !literal.is_empty()
                && literal.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                codes.insert(literal);
            }
        }
    }
    codes
}

#[test]
fn the_route_table_lists_every_route_the_router_has() {
    let doc = std::fs::read_to_string(repo().join(API_DOC)).unwrap();
    let documented: BTreeSet<(String, String)> = documented_routes(&doc)
        .into_iter()
        .map(|r| (r.method, shape(&r.path)))
        .collect();
    let missing: Vec<_> = router_routes()
        .into_iter()
        .filter(|(method, path)| !documented.contains(&(method.clone(), shape(path))))
        .collect();
    assert!(
        missing.is_empty(),
        "routes of src/web missing from the table of {API_DOC}: {missing:?}"
    );
}

#[test]
fn every_error_code_of_the_code_is_in_the_doc() {
    let doc = std::fs::read_to_string(repo().join(API_DOC)).unwrap();
    let codes = error_codes();
    for known in ["not_found", "method_not_allowed", "not_ready", "internal"] {
        assert!(
            codes.contains(known),
            "the scan of src/web missed {known}: {codes:?}"
        );
    }
    let missing: Vec<_> = codes
        .iter()
        .filter(|code| !doc.contains(&format!("`{code}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "error codes of src/web not named (in backticks) in {API_DOC}: {missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_answers_as_the_doc_says() {
    let doc = std::fs::read_to_string(repo().join(API_DOC)).unwrap();
    let routes = documented_routes(&doc);
    assert!(routes.len() >= 5, "no route table found in {API_DOC}");
    for route in &routes {
        assert!(
            !route.statuses.is_empty(),
            "{} {}: the last cell of its row lists no status",
            route.method,
            route.path
        );
    }
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(data.path(), &["--prep-time", "0"]).await;
    let client = &server.client;

    // An order first, so that `{N}` is a real ticket.
    let placed = client
        .post(server.url("/order"))
        .body("a cola")
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 201);
    let ticket = placed.json::<serde_json::Value>().await.unwrap()["order"].clone();

    for route in &routes {
        let path = shape(&route.path).replace("{}", &ticket.to_string());
        let method = reqwest::Method::from_bytes(route.method.as_bytes()).unwrap();
        let mut request = client.request(method, server.url(&path));
        if route.method == "POST" {
            request = request.body("a cola");
        }
        let mut response = request.send().await.unwrap();
        let status = response.status().as_u16();
        // Only the head: the event streams never end.
        let body = if route.path.ends_with("/updates") {
            String::new()
        } else {
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.unwrap() {
                body.extend_from_slice(&chunk);
            }
            String::from_utf8_lossy(&body).into_owned()
        };
        let label = format!("{} {}", route.method, route.path);
        assert_ne!(status, 405, "{label} is not answered: {body}");
        assert!(
            !(status == 404 && body.contains("\"not_found\"")),
            "{label} is not a route: {body}"
        );
        assert!(
            route.statuses.contains(&status),
            "{label} answered {status}, which the table of {API_DOC} does not list ({:?}): {body}",
            route.statuses
        );
    }
}
