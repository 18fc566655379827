//! The loader against the fixtures in tests/fixtures/openapi/ and against
//! hostile input.

use std::path::PathBuf;

use super::*;

/// keygate's own paths, as the gate would pass them.
const KEYGATE: &[Reserved] = &[
    Reserved::Exact("/api/v1/token"),
    Reserved::Exact("/api/v1/token/rotate"),
    Reserved::Exact("/gate/check"),
    Reserved::Prefix("/oauth/"),
    Reserved::Prefix("/.well-known/"),
];

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openapi").join(name)
}

fn fixture(name: &str) -> ApiSpec {
    load(&fixture_path(name), KEYGATE).unwrap_or_else(|error| panic!("{error}"))
}

fn fixture_problems(name: &str) -> Vec<Problem> {
    match load(&fixture_path(name), KEYGATE) {
        Ok(_) => panic!("{name} has no problem"),
        Err(LoadError::Problems { problems, .. }) => problems,
        Err(error) => panic!("{error}"),
    }
}

fn problems(text: &str) -> Vec<Problem> {
    parse(text, KEYGATE).map(|spec| spec.describe()).expect_err("the document has no problem")
}

/// The one problem of a document, which is at `pointer` and says `fragment`.
#[track_caller]
fn assert_one_problem(problems: &[Problem], pointer: &str, fragment: &str) {
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].pointer, pointer, "{problems:#?}");
    assert!(problems[0].message.contains(fragment), "{:?} does not say {fragment:?}", problems[0].message);
}

fn scopes(list: &[&[&str]]) -> Access {
    Access::Token { any_of: list.iter().map(|all| all.iter().map(|s| s.to_string()).collect()).collect() }
}

/// A small good document around `paths` (YAML, indented two spaces).
fn with_paths(paths: &str) -> String {
    format!(
        "openapi: 3.1.0\ninfo: {{title: T, version: '1'}}\npaths:\n{paths}\ncomponents:\n  securitySchemes:\n    \
         keygate:\n      type: oauth2\n      flows:\n        clientCredentials:\n          tokenUrl: /oauth/token\n          \
         scopes: {{items:read: Read., items:write: Write.}}\n"
    )
}

#[test]
fn the_inventory_service_becomes_its_route_table_and_catalogue() {
    let spec = fixture("inventory.yaml");
    assert_eq!(
        (spec.title.as_str(), spec.version.as_str(), spec.openapi.as_str()),
        ("Inventory Service", "2.4.0", "3.1.0")
    );
    assert_eq!(spec.base_path, "/v2");
    assert_eq!(spec.scheme, "keygate");
    let names: Vec<&str> = spec.catalogue.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, vec!["items:read", "items:write", "stock:read", "stock:write", "warehouses:read"]);
    assert_eq!(spec.catalogue[3].description, "Set stock levels (the warehouse must be named).");

    let routes: Vec<String> = spec.operations.iter().map(|op| format!("{} {}", op.method, op.path)).collect();
    assert_eq!(
        routes,
        vec![
            "GET /v2/status",
            "GET /v2/items",
            "POST /v2/items",
            "GET /v2/items/{sku}",
            "PATCH /v2/items/{sku}",
            "DELETE /v2/items/{sku}",
            "GET /v2/items/{sku}/stock",
            "PUT /v2/items/{sku}/stock",
            "GET /v2/warehouses",
        ],
        "document order, methods as the path item writes them"
    );
    let op = |id: &str| spec.operations.iter().find(|op| op.operation_id.as_deref() == Some(id)).unwrap();
    assert_eq!(op("getStatus").access, Access::Public, "security: []");
    assert_eq!(op("listItems").access, scopes(&[&["items:read"]]), "the document's security");
    assert_eq!(op("getItem").access, scopes(&[&["items:read"]]));
    assert_eq!(op("createItem").access, scopes(&[&["items:write"]]));
    assert_eq!(op("getItemStock").access, scopes(&[&["stock:read"], &["stock:write"]]), "either will do");
    assert_eq!(op("setItemStock").access, scopes(&[&["stock:write", "warehouses:read"]]), "both are needed");
    let get_item = op("getItem");
    assert_eq!(get_item.template, "/items/{sku}");
    assert_eq!(get_item.pointer, "/paths/~1items~1{sku}/get");
    assert_eq!(get_item.summary.as_deref(), Some("One item"));
    assert_eq!(
        spec.document.pointer(&format!("{}/operationId", get_item.pointer)),
        Some(&serde_json::json!("getItem")),
        "the pointer resolves in the document"
    );
    assert_eq!(
        spec.document.pointer("/components/schemas/NewItem/$ref"),
        Some(&serde_json::json!("#/components/schemas/Item")),
        "$refs are left as written"
    );
    assert_eq!(
        spec.document.pointer("/paths/~1status/get/responses/200/description"),
        Some(&serde_json::json!("The service is up.")),
        "a YAML key 200 is the JSON key \"200\""
    );
}

#[test]
fn the_3_0_json_edition_reads_a_bearer_scheme_and_its_x_keygate_scopes() {
    let spec = fixture("inventory-3.0.json");
    assert_eq!(spec.openapi, "3.0.3");
    assert_eq!(spec.scheme, "bearerAuth", "the only bearer scheme; the apiKey one is not keygate's");
    assert_eq!(spec.base_path, "/v1", "a server variable in the host is fine");
    assert_eq!(spec.catalogue.len(), 5);
    assert_eq!(
        spec.catalogue[0],
        ScopeEntry { name: "items:read".into(), description: "See the seller's items.".into() }
    );
    let op = |id: &str| spec.operations.iter().find(|op| op.operation_id.as_deref() == Some(id)).unwrap();
    assert_eq!(op("getStatus").access, Access::Public);
    assert_eq!(op("getItem").access, scopes(&[&["items:read"]]));
    assert_eq!(op("whoAmI").access, Access::any_token(), "the scheme with no scope: any valid token");
    assert_eq!(op("listWarehouses").access, scopes(&[&["warehouses:read"]]), "internalKey beside it is ignored");
    assert_eq!(op("setItemStock").access, scopes(&[&["stock:write", "warehouses:read"]]));
    assert_eq!(spec.operations.len(), 9);
}

#[test]
fn describe_prints_the_route_table_and_the_catalogue() {
    let described = fixture("inventory.yaml").describe();
    println!("{described}");
    let lines: Vec<&str> = described.lines().collect();
    assert_eq!(lines[0], "Inventory Service 2.4.0 (OpenAPI 3.1.0)");
    assert_eq!(lines[1], "Base path: /v2");
    assert_eq!(lines[2], "Scheme:    keygate");
    for line in [
        "Routes (9):",
        "  METHOD  PATH                   WHO MAY CALL                     OPERATION",
        "  GET     /v2/status             public                           getStatus",
        "  GET     /v2/items              items:read                       listItems",
        "  DELETE  /v2/items/{sku}        items:write                      deleteItem",
        "  GET     /v2/items/{sku}/stock  stock:read or stock:write        getItemStock",
        "  PUT     /v2/items/{sku}/stock  stock:write and warehouses:read  setItemStock",
        "  GET     /v2/warehouses         warehouses:read                  listWarehouses",
        "Scopes (5):",
        "  SCOPE            DESCRIPTION",
        "  items:read       See the seller's items, their titles, prices and attributes.",
        "  warehouses:read  See the seller's warehouses and their addresses.",
    ] {
        assert!(lines.contains(&line), "no line {line:?} in\n{described}");
    }
    assert!(lines.iter().all(|line| !line.ends_with(' ')), "no trailing spaces");
}

#[test]
fn access_reads_as_people_say_it() {
    assert_eq!(Access::Public.to_string(), "public");
    assert_eq!(Access::any_token().to_string(), "any valid token");
    assert_eq!(scopes(&[&["a", "b"], &["c"]]).to_string(), "(a and b) or c");
    assert_eq!(scopes(&[&["a"], &[]]).to_string(), "a or any valid token");
    let problem = Problem::new("/paths/~1items", "bad");
    assert_eq!(problem.to_string(), "/paths/~1items: bad");
    assert_eq!(Problem::new("", "bad").to_string(), "(document): bad");
}

// One fixture per kind of problem: the exact pointer and what it says.

#[test]
fn a_document_without_a_scheme_keygate_can_check_is_refused() {
    assert_one_problem(
        &fixture_problems("bad-no-scheme.yaml"),
        "/components/securitySchemes",
        "no security scheme keygate can check: none of `apiKey` is oauth2 or http bearer",
    );
}

#[test]
fn a_scope_not_in_the_catalogue_is_named_where_it_is_used() {
    assert_one_problem(
        &fixture_problems("bad-unknown-scope.yaml"),
        "/paths/~1items/get/security/0/keygate/1",
        "unknown scope `items:delete`: the catalogue has items:read, items:write",
    );
}

#[test]
fn a_parameter_that_is_part_of_a_segment_is_refused() {
    assert_one_problem(
        &fixture_problems("bad-template.yaml"),
        "/paths/~1items~1x{sku}",
        "a parameter must be a whole segment",
    );
}

#[test]
fn two_templates_that_differ_only_in_parameter_names_are_one_route() {
    assert_one_problem(
        &fixture_problems("bad-duplicate-route.yaml"),
        "/paths/~1items~1{id}/get",
        "duplicate route: GET /items/{id} is the same route as /paths/~1items~1{sku}/get",
    );
}

#[test]
fn a_ref_to_nothing_is_named_with_its_target() {
    assert_one_problem(
        &fixture_problems("bad-unresolved-ref.yaml"),
        "/paths/~1items/get/responses/200/content/application~1json/schema/$ref",
        "$ref target `#/components/schemas/Itme` does not exist",
    );
}

#[test]
fn a_ref_to_another_file_asks_for_a_bundled_document() {
    assert_one_problem(
        &fixture_problems("bad-external-ref.yaml"),
        "/paths/~1items/get/responses/200/content/application~1json/schema/$ref",
        "external $ref is not supported (`schemas/item.yaml#/Item`): keygate reads one file; bundle the document first",
    );
}

#[test]
fn a_swagger_2_document_is_refused_as_such() {
    assert_one_problem(&fixture_problems("swagger-2.0.json"), "/swagger", "this is a Swagger 2.0 document");
}

#[test]
fn keygates_own_paths_are_not_the_apis() {
    let problems = fixture_problems("bad-reserved-path.yaml");
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(problems[0].pointer, "/paths/~1api~1v1~1token");
    assert!(problems[0].message.contains("/api/v1/token is keygate's own path"), "{problems:#?}");
    assert_eq!(problems[1].pointer, "/paths/~1oauth~1authorize");
    assert!(problems[1].message.contains("keygate answers everything under /oauth/"), "{problems:#?}");
}

#[test]
fn a_scope_name_that_cannot_travel_in_a_header_is_refused() {
    assert_one_problem(
        &fixture_problems("bad-scope-name.yaml"),
        "/components/securitySchemes/keygate/flows/clientCredentials/scopes/items read all",
        "\"items read all\" is not a scope name keygate can use",
    );
}

// The rules beside the fixtures.

#[test]
fn every_problem_is_reported_sorted_by_pointer() {
    let text = with_paths(
        "  /b//c:\n    get: {security: [{keygate: [nope]}]}\n  /a/{x}:\n    get:\n      security:\n        - \
         keygate: [items:read, gone, items:write, also-gone]\n    GET: {}\n  /a/{y}:\n    get: {}\n  /z:\n    \
         get:\n      responses: {'200': {$ref: '#/missing'}}\n",
    );
    let found: Vec<(String, String)> = problems(&text).into_iter().map(|p| (p.pointer, p.message)).collect();
    let pointers: Vec<&str> = found.iter().map(|(pointer, _)| pointer.as_str()).collect();
    assert_eq!(
        pointers,
        vec![
            "/paths/~1a~1{x}/GET",
            "/paths/~1a~1{x}/get/security/0/keygate/1",
            "/paths/~1a~1{x}/get/security/0/keygate/3",
            "/paths/~1a~1{y}/get",
            "/paths/~1b~1~1c",
            "/paths/~1b~1~1c/get/security/0/keygate/0",
            "/paths/~1z/get/responses/200/$ref",
        ],
        "{found:#?}"
    );
    assert!(found[0].1.contains("methods are written in lower case"));
    assert!(found[3].1.contains("duplicate route"));
    assert!(found[4].1.contains("empty segment"));
}

#[test]
fn a_path_item_that_is_a_ref_is_followed() {
    let text = with_paths(
        "  /items:\n    $ref: '#/components/pathItems/Items'\n  /stock:\n    $ref: '#/components/pathItems/Items'\n    \
         get: {}\n",
    )
    .replace(
        "components:\n",
        "components:\n  pathItems:\n    Items:\n      get: {operationId: listItems, security: [{keygate: [items:read]}]}\n",
    );
    let found = problems(&text);
    assert_one_problem(&found, "/paths/~1stock/get", "a path item that is a $ref must not also define operations");
    let text = text.replace("    get: {}\n", "");
    let spec = parse(&text, KEYGATE).unwrap();
    assert_eq!(spec.operations.len(), 2);
    assert_eq!(spec.operations[1].path, "/stock");
    assert_eq!(spec.operations[1].access, scopes(&[&["items:read"]]));
    assert_eq!(spec.operations[1].pointer, "/components/pathItems/Items/get", "where the operation is written");
}

#[test]
fn an_empty_requirement_makes_an_operation_public_and_other_schemes_are_keygates_problem() {
    let text = with_paths(
        "  /a:\n    get: {security: [{keygate: [items:read]}, {}]}\n  /b:\n    get: {security: [{basic: []}]}\n  \
         /c:\n    get: {security: [{nobody: []}]}\n  /d:\n    get: {security: [{keygate: [items:read], basic: []}]}\n",
    )
    .replace("  securitySchemes:\n", "  securitySchemes:\n    basic: {type: http, scheme: basic}\n");
    let found = problems(&text);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(found[0].pointer, "/paths/~1b/get/security/0/basic");
    assert!(found[0].message.contains("keygate cannot check the security scheme `basic`"));
    assert_eq!(found[1].pointer, "/paths/~1c/get/security/0/nobody");
    assert!(found[1].message.contains("no security scheme named `nobody`"));
    let text = text.replace("{security: [{basic: []}]}", "{}").replace("{security: [{nobody: []}]}", "{}");
    let spec = parse(&text, KEYGATE).unwrap();
    assert_eq!(spec.operations[0].access, Access::Public);
    assert_eq!(spec.operations[1].access, Access::any_token(), "no security anywhere: a valid token");
    assert_eq!(spec.operations[3].access, scopes(&[&["items:read"]]), "basic beside keygate is ignored");
}

#[test]
fn the_scheme_is_the_one_named_keygate_else_the_only_candidate() {
    let two = "openapi: 3.0.3\ninfo: {title: T, version: '1'}\npaths:\n  /a:\n    get: {}\ncomponents:\n  \
               securitySchemes:\n    one: {type: http, scheme: Bearer}\n    two: {type: oauth2, flows: {}}\n";
    assert_one_problem(
        &problems(two),
        "/components/securitySchemes",
        "several schemes keygate could check (`one`, `two`)",
    );
    let named = two.replace("two:", "keygate:");
    let spec = parse(&named, KEYGATE).unwrap();
    assert_eq!(spec.scheme, "keygate");
    assert!(spec.catalogue.is_empty(), "an empty catalogue is fine when no operation needs a scope");
    let needs_one = named.replace("get: {}", "get: {security: [{keygate: [items:read]}]}");
    assert_one_problem(
        &problems(&needs_one),
        "/paths/~1a/get/security/0/keygate/0",
        "unknown scope `items:read`: the scheme `keygate` declares no scopes",
    );
    let wrong = two.replace("two: {type: oauth2, flows: {}}", "keygate: {type: apiKey, in: header, name: X-Key}");
    assert_one_problem(
        &problems(&wrong),
        "/components/securitySchemes/keygate/type",
        "the scheme `keygate` must be of type oauth2, or http with scheme bearer (it is apiKey)",
    );
    let none = "openapi: 3.0.3\ninfo: {title: T, version: '1'}\npaths:\n  /a:\n    get: {}\n";
    assert_one_problem(&problems(none), "/components/securitySchemes", "no security scheme");
    let by_ref = two
        .replace("two: {type: oauth2, flows: {}}", "keygate: {$ref: '#/x-schemes/gate'}")
        .replace("components:", "x-schemes:\n  gate:\n    type: oauth2\n    flows: {implicit: {authorizationUrl: /a, scopes: {s: S}}}\ncomponents:");
    assert_eq!(parse(&by_ref, KEYGATE).unwrap().catalogue[0].name, "s", "a scheme may be a $ref");
}

#[test]
fn a_scope_in_two_flows_keeps_its_first_description() {
    let text = with_paths("  /a:\n    get: {security: [{keygate: [items:read]}]}\n").replace(
        "        clientCredentials:",
        "        implicit: {authorizationUrl: /oauth/authorize, scopes: {items:read: First., extra: Extra.}}\n        \
         x-note: not a flow\n        clientCredentials:",
    );
    let spec = parse(&text, KEYGATE).unwrap();
    let entries: Vec<(&str, &str)> = spec.catalogue.iter().map(|e| (e.name.as_str(), e.description.as_str())).collect();
    assert_eq!(entries, vec![("items:read", "First."), ("extra", "Extra."), ("items:write", "Write.")]);
}

#[test]
fn versions_other_than_3_0_and_3_1_are_refused_before_anything_else() {
    let text = with_paths("  /a:\n    get: {}\n");
    for (version, fragment) in
        [("3.2.0", "OpenAPI \"3.2.0\" is not supported"), ("3.1", "is not supported"), ("3.1.x", "is not supported")]
    {
        let found = problems(&text.replace("openapi: 3.1.0", &format!("openapi: '{version}'")));
        assert_one_problem(&found, "/openapi", fragment);
    }
    assert_one_problem(&problems(&text.replace("openapi: 3.1.0", "openapi: 3.1")), "/openapi", "must be a string");
    assert_one_problem(&problems(&text.replace("openapi: 3.1.0\n", "")), "", "no `openapi` field");
    assert!(parse(&text.replace("3.1.0", "3.0.0-rc1"), KEYGATE).is_ok());
}

#[test]
fn the_base_path_prefixes_every_route_and_a_bad_server_url_is_named() {
    let text = with_paths("  /:\n    get: {}\n  /a:\n    get: {}\n")
        .replace("paths:", "servers:\n  - url: /api/\n  - url: https://ignored.example/v9\npaths:");
    let spec = parse(&text, KEYGATE).unwrap();
    let paths: Vec<&str> = spec.operations.iter().map(|op| op.path.as_str()).collect();
    assert_eq!(paths, vec!["/api/", "/api/a"]);
    let bad = text.replace("url: /api/", "url: 'https://h/{version}'");
    assert_one_problem(&problems(&bad), "/servers/0/url", "server variable in its path");
    let reserved = text.replace("url: /api/", "url: /api/v1").replace("  /a:", "  /token:");
    assert_one_problem(&problems(&reserved), "/paths/~1token", "/api/v1/token is keygate's own path");
}

#[test]
fn a_document_without_operations_is_refused() {
    assert_one_problem(&problems(&with_paths("  {}")), "/paths", "no operations");
    let only_parameters = with_paths("  /a:\n    parameters: []\n  x-note: {}\n");
    assert_one_problem(&problems(&only_parameters), "/paths", "no operations");
    let found =
        problems(&with_paths("  /a:\n    get:\n      security:\n").replace("info: {title: T, version: '1'}\n", ""));
    let pointers: Vec<&str> = found.iter().map(|p| p.pointer.as_str()).collect();
    assert_eq!(pointers, vec!["", "/paths/~1a/get/security"], "{found:#?}");
    assert!(found[0].message.contains("no `info` object") && found[1].message.contains("write `security: []`"));
    let wrong_type = problems(&with_paths("  /a:\n    get: {operationId: [1]}\n"));
    assert_one_problem(&wrong_type, "/paths/~1a/get/operationId", "invalid type: sequence, expected a string");
    let bad_info = problems(
        &with_paths("  /a:\n    get: {}\n").replace("info: {title: T, version: '1'}", "info: {title: T, version: 1.0}"),
    );
    assert_one_problem(&bad_info, "/info/version", "expected a string");
}

// Hostile input: refused with a message, never a panic, never unbounded.

#[test]
fn text_that_does_not_parse_is_named_with_its_line_and_column() {
    assert_one_problem(
        &problems("{\"openapi\": \"3.1.0\",}"),
        "",
        "not valid JSON: trailing comma at line 1 column 21",
    );
    assert_one_problem(&problems("openapi: 3.1.0\ninfo: [\n  a: b\n"), "", "not valid YAML");
    let found = problems("openapi: 3.1.0\ninfo: [\n  a: b\n");
    assert!(
        found[0].message.contains("at line 4 column 1, while parsing a flow sequence at line 2 column 7"),
        "{found:?}"
    );
    assert_one_problem(&problems("{\"openapi\": \"3.1.0\"} {}"), "", "trailing characters at line 1 column 22");
    assert_one_problem(&problems("a: 1\n---\nb: 2\n"), "", "more than one document");
}

#[test]
fn a_document_that_is_not_a_mapping_is_refused() {
    assert_one_problem(&problems("[1, 2]"), "", "must be a mapping (an OpenAPI object), not a list");
    assert_one_problem(&problems("\"hello\""), "", "not a string");
    assert_one_problem(&problems("just some words"), "", "not a string");
    assert_one_problem(&problems(""), "", "not null");
    assert_one_problem(&problems("42"), "", "not a number");
}

#[test]
fn bytes_that_are_not_utf8_are_refused_by_offset() {
    let found = parse_bytes(b"openapi: 3.1.0\ninfo: \xff\xfe\n", KEYGATE).unwrap_err();
    assert_one_problem(&found, "", "not UTF-8 text (invalid byte at offset 21)");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.yaml");
    std::fs::write(&path, b"info: {title: Caf\xe9}\n").unwrap();
    let error = load(&path, KEYGATE).unwrap_err();
    assert!(error.to_string().contains("latin1.yaml: 1 problem\n  (document): the document is not UTF-8"), "{error}");
    let missing = load(&dir.path().join("missing.yaml"), KEYGATE).unwrap_err();
    assert!(matches!(missing, LoadError::Read { .. }) && missing.to_string().starts_with("cannot read "), "{missing}");
}

#[test]
fn a_50_mb_document_is_refused_before_it_is_parsed() {
    let big = format!("openapi: 3.1.0\nx-padding: '{}'\n", "x".repeat(50 << 20));
    assert_one_problem(&problems(&big), "", "keygate reads documents of at most 8388608 bytes (8 MiB)");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.json");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(50 << 20).unwrap(); // sparse: refused on its size, never read
    let error = load(&path, KEYGATE).unwrap_err();
    assert!(error.to_string().contains("the document is 52428800 bytes"), "{error}");
}

#[test]
fn a_billion_laughs_is_refused_when_it_expands_past_the_budget() {
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..=9 {
        let previous = format!("*a{}", level - 1);
        let list = [previous.as_str(); 10].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{list}]\n"));
    }
    assert!(text.len() < 1000);
    // yaml_serde's own limit (100 alias uses per event of the document)
    // stops this one before the value budget does.
    assert_one_problem(&problems(&text), "", "repetition limit exceeded (YAML aliases expand to too much)");
}

#[test]
fn aliases_of_one_large_node_are_bounded_too() {
    // Not nested, so no alias is ever replayed inside another: a plain
    // count of alias uses would let this through (it would grow as
    // uses × size, about 10^10 values from 1 MB of text).
    let big = vec!["x"; 100_000].join(", ");
    let uses = "- *big\n".repeat(100_000);
    let text = format!("anchor: &big [{big}]\nuses:\n{uses}");
    assert!(text.len() < MAX_DOCUMENT_BYTES);
    assert_one_problem(&problems(&text), "/uses/8/99986", "the document expands to more than 1000000 values");
    let long = "y".repeat(1 << 20);
    let text = format!("anchor: &s '{long}'\nuses: [{}]\n", vec!["*s"; 200].join(", "));
    assert_one_problem(&problems(&text), "/uses/30", "more than 33554432 bytes of text");
}

#[test]
fn deep_nesting_is_refused_without_exhausting_the_stack() {
    let depth = 10_000;
    let flow = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    // The 65th container: under the root mapping's `a` or at the root.
    let under_a = format!("/a{}", "/0".repeat(MAX_DEPTH - 1));
    assert_one_problem(&problems(&format!("a: {flow}")), &under_a, "the document is nested more than 64 levels deep");
    assert_one_problem(
        &problems(&flow),
        &"/0".repeat(MAX_DEPTH),
        "nested more than 64 levels deep (line 1, column 65)",
    );
    let mappings = format!("{}1{}", "{\"a\": ".repeat(depth), "}".repeat(depth));
    assert_one_problem(&problems(&mappings), &"/a".repeat(MAX_DEPTH), "nested more than 64 levels deep");
    let mut block = String::new();
    for level in 0..200 {
        block.push_str(&" ".repeat(level));
        block.push_str("a:\n");
    }
    assert_one_problem(&problems(&block), &"/a".repeat(MAX_DEPTH), "nested more than 64 levels deep");
}

#[test]
fn a_key_written_twice_is_refused_in_yaml_and_in_json() {
    let text = with_paths("  /items:\n    get: {}\n  /items:\n    post: {}\n");
    let found = problems(&text);
    assert_one_problem(
        &found,
        "/paths",
        "duplicate key `/items` (each key may appear once in a mapping) (line 4, column 3)",
    );
    let found = problems("{\"paths\": {\"/a\": {}, \"/a\": {}}}");
    assert_one_problem(
        &found,
        "/paths",
        "duplicate key `/a` (each key may appear once in a mapping) (line 1, column 25)",
    );
}

#[test]
fn yaml_tags_and_merge_keys_are_refused_rather_than_misread() {
    assert_one_problem(&problems("openapi: !Ref x\n"), "/openapi", "YAML tags (such as `!Ref`) are not supported");
    assert_one_problem(
        &problems("base: &b {get: {}}\npaths:\n  /a:\n    <<: *b\n"),
        "/paths/~1a",
        "YAML merge keys (`<<`) are not supported",
    );
}

#[test]
fn truncated_and_garbled_documents_give_problems_never_a_panic() {
    let text = std::fs::read_to_string(fixture_path("inventory.yaml")).unwrap();
    let json = std::fs::read_to_string(fixture_path("inventory-3.0.json")).unwrap();
    for text in [&text, &json] {
        assert!(text.is_ascii(), "cut anywhere below");
        for end in (0..text.len()).step_by(text.len() / 150) {
            let _ = parse(&text[..end], KEYGATE);
        }
        // A fixed pseudo-random walk: each round puts one YAML or JSON
        // punctuation character somewhere.
        let garble = b"[]{}:,&*!|>-'\"\n #%@?/\\";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..400 {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let at = (state >> 33) as usize % text.len();
            let with = garble[(state >> 20) as usize % garble.len()] as char;
            let mut garbled = text.clone();
            garbled.replace_range(at..at + 1, &with.to_string());
            let _ = parse(&garbled, KEYGATE);
        }
    }
}
