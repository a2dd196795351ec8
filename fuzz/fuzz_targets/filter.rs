//! Consul filter expressions (`?filter=`): parsing, checking and evaluating never
//! panic, whatever the expression.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tribune_model::filter::{compile, Field, Type};

const INNER: &[Field] = &[
    Field::new("Name", Type::String),
    Field::new("Port", Type::Int),
];
const SCHEMA: &[Field] = &[
    Field::new("Name", Type::String),
    Field::new("Port", Type::Int),
    Field::new("Weight", Type::Float),
    Field::new("On", Type::Bool),
    Field::new("Tags", Type::StringList),
    Field::new("Meta", Type::StringMap),
    Field::new("Inner", Type::Struct(INNER)),
    Field::new("Items", Type::StructList(INNER)),
];

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(f) = compile(text, SCHEMA) {
            let item = serde_json::json!({
                "Name": "web", "Port": 8080, "Weight": 1.5, "On": true, "Tags": ["a", "b"],
                "Meta": {"env": "qa"}, "Inner": {"Name": "x", "Port": 1},
                "Items": [{"Name": "y", "Port": 2}, {"Name": 5}],
            });
            let _ = f.matches(&item);
            let _ = f.matches(&serde_json::Value::Null);
        }
    }
});
