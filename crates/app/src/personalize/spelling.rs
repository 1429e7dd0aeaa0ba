//! The sensitivity rules hold whatever the spelling: a sensitive category written in any case, with
//! any spaces, in the catalog and on items is one category, and its items are never recommended
//! from behaviour (only to a person who declared the topic, in any spelling of their own).

use proptest::prelude::*;

use super::*;

const CATALOG: &str = r#"
[brand]
name = "Shop"

[sources.web]
kind = "server"
write_key = "wk_test_12345"

[purposes."personalize.content"]
name = "Recommendations"
description = "We use what you looked at to suggest products."
benefit = "Products you may like."

[properties."traits.interests"]
category = "user.demographic.profile"
purposes = ["personalize.content"]
retention = "1y"

[personalization]
purpose = "personalize.content"
interests = "traits.interests"
sensitive_categories = ["SPELLING"]
min_support = 2
"#;

const NOW: i64 = 100 * tactful_personalize::DAY_MS;

/// Categories a brand may call sensitive, as the normalized spelling has them.
const SENSITIVE: [&str; 3] = ["pregnancy", "sexual health", "mental health care"];

/// A spelling of `name`: each letter in either case, runs of spaces and tabs around it and between
/// its words.
fn spelling(name: &'static str) -> impl Strategy<Value = String> {
    let words: Vec<&'static str> = name.split(' ').collect();
    (
        proptest::collection::vec(any::<bool>(), name.len()),
        proptest::collection::vec("[ \t]{1,3}", words.len() - 1),
        "[ \t]{0,2}",
        "[ \t]{0,2}",
    )
        .prop_map(move |(upper, gaps, before, after)| {
            let mut upper = upper.into_iter();
            let mut cased = words.iter().map(|word| {
                word.chars()
                    .map(|c| if upper.next().unwrap_or(false) { c.to_ascii_uppercase() } else { c })
                    .collect::<String>()
            });
            let mut text = before;
            text.push_str(&cased.next().unwrap_or_default());
            for (gap, word) in gaps.iter().zip(cased) {
                text.push_str(gap);
                text.push_str(&word);
            }
            text.push_str(&after);
            text
        })
}

/// One sensitive category and four spellings of it: the catalog's, the items', a request filter's
/// and the one a person declares.
fn spellings() -> impl Strategy<Value = (&'static str, [String; 4])> {
    proptest::sample::select(SENSITIVE.to_vec())
        .prop_flat_map(|name| (Just(name), [spelling(name), spelling(name), spelling(name), spelling(name)]))
}

/// An engine whose sensitive category the catalog spells `in_catalog`, with a boot, a sock and a
/// kit in the category spelled `on_items`, and a released model in which many people had the kit
/// with the boot (a brand that tagged it late), so it is the most popular and trending item.
fn engine(in_catalog: &str, on_items: &str) -> (Personalization, ItemRecord) {
    let catalog = Catalog::parse(&CATALOG.replace("SPELLING", in_catalog))
        .unwrap_or_else(|errors| panic!("{}", errors.render("test")));
    let engine = Personalization::new(&catalog).expect("personalization is declared");
    let item = |id: &str, category: &str| {
        let input = ItemInput {
            id: Some(id.into()),
            name: None,
            categories: vec![category.into()],
            sensitive: false,
            available: true,
            price: Some(100),
            attributes: None,
        };
        item_record(input, None, NOW).expect("a valid item")
    };
    let kit = item("kit", on_items);
    {
        let mut model = engine.write();
        for record in [item("boot", "Shoes"), item("sock", "socks"), kit.clone()] {
            let info = engine.info(&record);
            model.catalogue.upsert(info);
        }
        let ix = |id: &str| model.catalogue.known(id).expect("upserted");
        let had = |items: &[ItemIx]| {
            Contribution::from_touches(items.iter().map(|&item| Touch { item, weight: 1, at: NOW }))
        };
        let mut people = vec![had(&[ix("boot"), ix("kit")]); 8];
        people.extend(vec![had(&[ix("boot"), ix("sock")]); 3]);
        let aggregates = Aggregates::train(&engine.config, &people);
        model.release = Arc::new(Release::full(&aggregates, &engine.config, NOW).expect("released"));
    }
    (engine, kit)
}

fn person(engine: &Personalization, interests: Vec<String>) -> Person {
    let boot = engine.read().catalogue.known("boot").expect("known");
    Person {
        contribution: Contribution::from_touches([Touch { item: boot, weight: 1, at: NOW }]),
        interests,
        first_seen: Some(NOW),
        last_seen: Some(NOW),
    }
}

fn ids(picked: &[Picked]) -> Vec<&str> {
    picked.iter().map(|p| p.item.id.as_str()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_sensitive_item_is_never_recommended_from_behaviour_whatever_the_spelling(
        (name, [in_catalog, on_items, in_filter, declared]) in spellings()
    ) {
        let (engine, kit) = engine(&in_catalog, &on_items);
        prop_assert!(engine.is_sensitive(&kit));
        let topics = engine.topics();
        prop_assert_eq!(topics.iter().filter(|(topic, _)| topic == name).count(), 1, "{:?}", topics);
        prop_assert!(topics.iter().any(|(topic, sensitive)| topic == name && *sensitive));

        // Not because of what the person viewed, not as popular or trending to anyone, not like
        // the item being looked at, and not even when a filter asks for its category.
        let viewer = person(&engine, Vec::new());
        let asked = FilterInput { categories: vec![in_filter], ..FilterInput::default() };
        for (who, context, filter) in [
            (Some(&viewer), None, FilterInput::default()),
            (None, None, FilterInput::default()),
            (Some(&viewer), Some("boot"), FilterInput::default()),
            (None, None, asked.clone()),
            (Some(&viewer), None, asked.clone()),
        ] {
            let picked = engine.recommend(who, context, filter, 10, 0);
            prop_assert!(!ids(&picked).contains(&"kit"), "{:?}", picked);
        }
        let similar = engine.similar("boot", FilterInput::default(), 10, 0);
        prop_assert!(!ids(&similar).contains(&"kit"), "{:?}", similar);

        // Only a person who declared the topic, in their own spelling, sees it, because they did.
        let interests = contribution::interest_list(&json!([declared]));
        let told = person(&engine, interests);
        let picked = engine.recommend(Some(&told), None, asked, 10, 0);
        prop_assert_eq!(ids(&picked), ["kit"]);
        prop_assert_eq!(&picked[0].reason, &json!({"type": "you_told_us", "interest": name}));
    }
}
