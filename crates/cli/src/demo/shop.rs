//! A generated web shop for the demo and the benchmarks: a product range in categories and customers
//! with tastes, who browse anonymously, sign up, search, fill baskets and order, from the web, the
//! iOS app and the order service — sent as the real SDKs would send them. Deterministic for a seed,
//! so running it twice stores nothing twice (the messageIds repeat and are deduplicated).

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

pub const CATEGORIES: &[(&str, &[&str])] = &[
    ("Kitchen", &["Skillet", "Chef's Knife", "Cutting Board", "Dutch Oven", "Kettle", "Whisk", "Colander"]),
    ("Garden", &["Trowel", "Watering Can", "Pruning Shears", "Seed Kit", "Planter", "Hose Reel", "Gloves"]),
    ("Home", &["Throw Blanket", "Table Lamp", "Vase", "Cushion", "Wall Clock", "Candle Set", "Rug"]),
    ("Bath", &["Towel Set", "Bath Mat", "Soap Dish", "Shower Caddy", "Robe", "Toothbrush Holder", "Scale"]),
    ("Outdoor", &["Tent", "Camping Stove", "Lantern", "Hammock", "Cooler", "Picnic Set", "Folding Chair"]),
    ("Pantry", &["Olive Oil", "Honey", "Coffee Beans", "Loose Tea", "Granola", "Pasta", "Spice Set"]),
    ("Kids", &["Building Blocks", "Puzzle", "Plush Fox", "Crayons", "Picture Book", "Kite", "Play Tent"]),
    (
        "Wellness",
        &[
            "Yoga Mat",
            "Vitamin D",
            "Pregnancy Test",
            "Heating Pad",
            "First Aid Kit",
            "Foam Roller",
            "Sleep Mask",
        ],
    ),
];

const ADJECTIVES: &[&str] =
    &["Classic", "Linen", "Oak", "Copper", "Everyday", "Heritage", "Alpine", "Coastal"];
const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Katherine",
    "Linus",
    "Margaret",
    "Tim",
    "Barbara",
    "Dennis",
    "Frances",
    "Ken",
    "Radia",
    "John",
    "Hedy",
    "Edsger",
    "Sophie",
    "Donald",
    "Joan",
    "Niklaus",
    "Mary",
    "Leslie",
    "Anita",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Johnson",
    "Torvalds",
    "Hamilton",
    "Berners-Lee",
    "Liskov",
    "Ritchie",
    "Allen",
    "Thompson",
    "Perlman",
    "McCarthy",
    "Lamarr",
    "Dijkstra",
    "Wilson",
    "Knuth",
    "Clarke",
    "Wirth",
];
/// Where a customer lives. US addresses carry their state, which picks California's law.
struct Place {
    country: &'static str,
    state: Option<&'static str>,
    city: &'static str,
    locale: &'static str,
    timezone: &'static str,
}

const fn place(
    country: &'static str,
    state: Option<&'static str>,
    city: &'static str,
    locale: &'static str,
    timezone: &'static str,
) -> Place {
    Place { country, state, city, locale, timezone }
}

const PLACES: &[Place] = &[
    place("DE", None, "Berlin", "de-DE", "Europe/Berlin"),
    place("FR", None, "Lyon", "fr-FR", "Europe/Paris"),
    place("NL", None, "Utrecht", "nl-NL", "Europe/Amsterdam"),
    place("ES", None, "Valencia", "es-ES", "Europe/Madrid"),
    place("IT", None, "Bologna", "it-IT", "Europe/Rome"),
    place("GB", None, "Leeds", "en-GB", "Europe/London"),
    place("US", Some("CA"), "Oakland", "en-US", "America/Los_Angeles"),
    place("US", Some("CA"), "San Diego", "en-US", "America/Los_Angeles"),
];
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0",
];

pub struct Product {
    pub id: String,
    pub name: String,
    pub category: &'static str,
    pub price: f64,
}

/// The shop's product range: every category's items in several styles.
pub fn products() -> Vec<Product> {
    let mut products = Vec::new();
    for (category, items) in CATEGORIES {
        for (style_index, style) in ADJECTIVES.iter().enumerate() {
            for (item_index, item) in items.iter().enumerate() {
                let number = products.len() + 1;
                let cents = 300 + (number * 7919 + style_index * 131 + item_index * 977) % 12_000;
                products.push(Product {
                    id: format!("sku-{number:04}"),
                    name: format!("{style} {item}"),
                    category,
                    price: cents as f64 / 100.0,
                });
            }
        }
    }
    products
}

/// The product range as the item catalogue recommendations use: lower-case categories, and the
/// pregnancy test and health products in categories the example catalog calls sensitive.
pub fn items(products: &[Product]) -> Vec<tactful_store::ItemRecord> {
    products
        .iter()
        .map(|product| {
            let mut categories = vec![product.category.to_lowercase()];
            if product.name.ends_with("Pregnancy Test") {
                categories.push("pregnancy".into());
            } else if ["Vitamin D", "First Aid Kit", "Heating Pad"].iter().any(|n| product.name.ends_with(n))
            {
                categories.push("health".into());
            }
            tactful_store::ItemRecord {
                id: product.id.clone(),
                name: product.name.clone(),
                categories,
                sensitive: false,
                available: true,
                price: Some((product.price * 100.0).round() as i64),
                attributes: json!({"url": format!("https://fernhill.example/p/{}", product.id)}),
                updated_at: 0,
                version: 0,
            }
        })
        .collect()
}

/// Which source an event is sent through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Web,
    Ios,
    Backend,
}

impl Channel {
    pub fn write_key(self) -> &'static str {
        match self {
            Channel::Web => "wk_web_fernhill_demo",
            Channel::Ios => "wk_ios_fernhill_demo",
            Channel::Backend => "wk_backend_fernhill_demo",
        }
    }

    /// The secret the shop's backend signs identity tokens with for this source's signed-in people
    /// (the example catalog's `identity_secret`); none for the order service, whose key is secret.
    pub fn identity_secret(self) -> Option<&'static str> {
        match self {
            Channel::Web => Some("idsec_fernhill_web_demo_replace_me"),
            Channel::Ios => Some("idsec_fernhill_ios_demo_replace_me"),
            Channel::Backend => None,
        }
    }
}

/// One generated customer and everything they sent, in time order.
pub struct Customer {
    pub email: String,
    /// Whether they signed up (so their email identifies them).
    pub registered: bool,
    pub events: Vec<(Channel, Value)>,
}

/// Generates customer `index` of a shop seeded with `seed`, with events in the 90 days before `now`
/// (Unix milliseconds).
pub fn customer(products: &[Product], seed: u64, index: u64, now: i64) -> Customer {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(index));
    let first = *FIRST_NAMES.choose(&mut rng).unwrap_or(&"Ada");
    let last = *LAST_NAMES.choose(&mut rng).unwrap_or(&"Lovelace");
    let email =
        format!("{}.{}.{index}@example.com", first.to_lowercase(), last.to_lowercase().replace('-', ""));
    let home = PLACES.choose(&mut rng).unwrap_or(&PLACES[0]);
    let (country, city, locale) = (home.country, home.city, home.locale);
    let anonymous_id = format!("anon-{seed}-{index}");
    let registers = rng.random_bool(0.75);
    let user_id = registers.then(|| format!("cust-{seed}-{index}"));
    // Tastes: one or two favourite categories; most browsing happens there.
    let favourites: Vec<&str> = {
        let first_pick = CATEGORIES.choose(&mut rng).map_or("Kitchen", |c| c.0);
        let second_pick = CATEGORIES.choose(&mut rng).map_or("Home", |c| c.0);
        if rng.random_bool(0.5) { vec![first_pick] } else { vec![first_pick, second_pick] }
    };
    let ip = format!(
        "{}.{}",
        ["192.0.2", "198.51.100", "203.0.113"][usize::try_from(index % 3).unwrap_or(0)],
        1 + index % 250
    );
    let user_agent = *USER_AGENTS.choose(&mut rng).unwrap_or(&USER_AGENTS[0]);
    let app_user = rng.random_bool(0.15);
    // The consent banner: what this customer chose, sent with every event as analytics.js's consent
    // wrapper does. Declining is as common as it is in real shops.
    let consent = json!({"categoryPreferences": {
        "Personalization": rng.random_bool(0.7),
        "Analytics": rng.random_bool(0.6),
        "Email": rng.random_bool(0.4),
        "Advertising": rng.random_bool(0.25),
    }});

    let mut events = Vec::new();
    let mut message = 0u32;
    let mut next_id = || {
        message += 1;
        format!("demo-{seed}-{index}-{message}")
    };
    let sessions = rng.random_range(1..=8);
    let mut session_starts: Vec<i64> =
        (0..sessions).map(|_| now - rng.random_range(60_000..90 * 86_400_000_i64)).collect();
    session_starts.sort_unstable();
    let mut signed_up = false;
    let mut orders = 0;
    for (session, start) in session_starts.into_iter().enumerate() {
        let channel = if app_user && rng.random_bool(0.6) { Channel::Ios } else { Channel::Web };
        let mut clock = start;
        let mut tick = |rng: &mut StdRng| {
            clock += rng.random_range(5_000..120_000);
            super::iso(clock)
        };
        let known = signed_up.then(|| user_id.clone()).flatten();
        let ids = |known: &Option<String>| match known {
            Some(user) => json!({"userId": user, "anonymousId": anonymous_id}),
            None => json!({"anonymousId": anonymous_id}),
        };
        let context = |channel: Channel, page: Option<(&str, &str)>, rng: &mut StdRng| {
            let mut context = json!({
                "ip": ip, "locale": locale, "timezone": home.timezone, "consent": consent,
                "library": match channel {
                    Channel::Ios => json!({"name": "analytics-swift", "version": "1.5.11"}),
                    _ => json!({"name": "analytics.js", "version": "npm:next-1.84.3"}),
                },
            });
            match channel {
                Channel::Ios => {
                    context["device"] = json!({"model": "iPhone15,2", "type": "ios"});
                    context["os"] = json!({"name": "iOS", "version": "18.1"});
                    if rng.random_bool(0.3) {
                        // The store finder: precise location, allowed from the app only.
                        context["location"] =
                            json!({"latitude": 52.37 + rng.random_range(-0.05..0.05), "longitude": 4.89});
                    }
                }
                _ => {
                    context["userAgent"] = json!(user_agent);
                    context["screen"] = json!({"width": 1440, "height": 900});
                    if let Some((path, title)) = page {
                        context["page"] = json!({"path": path, "title": title, "url": format!("https://fernhill.example{path}")});
                    }
                }
            }
            context
        };

        let mut page = ids(&known);
        page["messageId"] = json!(next_id());
        page["timestamp"] = json!(tick(&mut rng));
        page["name"] = json!("Home");
        page["context"] = context(channel, Some(("/", "Fernhill Market")), &mut rng);
        events.push((channel, with_type(page, "page")));

        if rng.random_bool(0.35) {
            let query = favourites.choose(&mut rng).copied().unwrap_or("gift").to_lowercase();
            let mut search = ids(&known);
            search["messageId"] = json!(next_id());
            search["timestamp"] = json!(tick(&mut rng));
            search["event"] = json!("Products Searched");
            search["properties"] = json!({"query": query});
            search["context"] = context(channel, Some(("/search", "Search")), &mut rng);
            events.push((channel, with_type(search, "track")));
        }

        let mut basket: Vec<&Product> = Vec::new();
        for _ in 0..rng.random_range(2..=8) {
            let product = pick_product(products, &favourites, &mut rng);
            let mut view = ids(&known);
            view["messageId"] = json!(next_id());
            view["timestamp"] = json!(tick(&mut rng));
            view["event"] = json!("Product Viewed");
            view["properties"] =
                json!({"product_id": product.id, "category": product.category, "price": product.price});
            if rng.random_bool(0.1) {
                view["properties"]["coupon"] = json!("SPRING10");
            }
            view["context"] =
                context(channel, Some((&format!("/p/{}", product.id), product.name.as_str())), &mut rng);
            events.push((channel, with_type(view, "track")));
            if rng.random_bool(0.3) {
                basket.push(product);
                let mut added = ids(&known);
                added["messageId"] = json!(next_id());
                added["timestamp"] = json!(tick(&mut rng));
                added["event"] = json!("Product Added");
                added["properties"] = json!({"product_id": product.id, "category": product.category, "price": product.price, "quantity": 1});
                added["context"] = context(channel, None, &mut rng);
                events.push((channel, with_type(added, "track")));
            }
        }

        // Signing up (or in) links everything this device did so far to the account.
        let signs_up_now =
            registers && !signed_up && (session > 0 || !basket.is_empty() || rng.random_bool(0.3));
        if signs_up_now {
            signed_up = true;
            let mut identify = json!({"userId": user_id, "anonymousId": anonymous_id});
            identify["messageId"] = json!(next_id());
            let signed_up_at = tick(&mut rng);
            identify["timestamp"] = json!(signed_up_at);
            identify["traits"] = json!({
                "email": email, "first_name": first, "last_name": last, "name": format!("{first} {last}"),
                "address": match home.state {
                    Some(state) => json!({"city": city, "state": state, "country": country}),
                    None => json!({"city": city, "country": country}),
                },
                "interests": favourites.iter().map(|c| c.to_lowercase()).collect::<Vec<_>>(),
                "created_at": signed_up_at,
                "favourite_colour": "green"
            });
            identify["context"] = context(channel, None, &mut rng);
            events.push((channel, with_type(identify, "identify")));
            let mut signed = json!({"userId": user_id});
            signed["messageId"] = json!(next_id());
            signed["timestamp"] = json!(tick(&mut rng));
            signed["event"] = json!("Signed Up");
            signed["context"] = context(channel, None, &mut rng);
            events.push((channel, with_type(signed, "track")));
        }

        if !basket.is_empty() && signed_up && rng.random_bool(0.55) {
            orders += 1;
            let mut checkout = json!({"userId": user_id});
            checkout["messageId"] = json!(next_id());
            checkout["timestamp"] = json!(tick(&mut rng));
            checkout["event"] = json!("Checkout Started");
            checkout["context"] = context(channel, Some(("/checkout", "Checkout")), &mut rng);
            events.push((channel, with_type(checkout, "track")));
            let revenue: f64 = basket.iter().map(|product| product.price).sum();
            // The order service confirms orders server-side (a strict source: declared properties only).
            let mut order = json!({"userId": user_id});
            order["messageId"] = json!(next_id());
            order["timestamp"] = json!(tick(&mut rng));
            order["event"] = json!("Order Completed");
            order["properties"] = json!({
                "order_id": format!("FH-{seed}-{index}-{orders}"),
                "revenue": (revenue * 100.0).round() / 100.0,
                "currency": "EUR",
                "products": basket.iter().map(|p| json!({"product_id": p.id, "quantity": 1, "price": p.price})).collect::<Vec<_>>()
            });
            order["context"] = json!({"library": {"name": "analytics-python", "version": "2.4.0"}});
            events.push((Channel::Backend, with_type(order, "track")));
        }
    }
    // A signed-in page or app sends what the shop's backend gave it: the identity token of the
    // person, so their events prove whose they are.
    for (channel, event) in &mut events {
        if let (Some(secret), Some(user)) =
            (channel.identity_secret(), event["userId"].as_str().map(str::to_owned))
        {
            event["context"]["identityToken"] = json!(tactful_domain::identity::token(secret, &user));
        }
    }
    Customer { email, registered: signed_up, events }
}

fn with_type(mut event: Value, kind: &str) -> Value {
    event["type"] = json!(kind);
    event
}

/// Mostly from a favourite category, with a popularity skew inside it.
fn pick_product<'a>(products: &'a [Product], favourites: &[&str], rng: &mut StdRng) -> &'a Product {
    let category = if rng.random_bool(0.8) {
        favourites.choose(rng).copied().unwrap_or("Kitchen")
    } else {
        CATEGORIES.choose(rng).map_or("Kitchen", |c| c.0)
    };
    let in_category: Vec<&Product> = products.iter().filter(|product| product.category == category).collect();
    // Squaring a uniform draw favours the first items: a simple popularity skew.
    let draw: f64 = rng.random();
    let position = ((draw * draw) * in_category.len() as f64) as usize;
    in_category[position.min(in_category.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_plausible() {
        let products = products();
        assert_eq!(products.len(), CATEGORIES.len() * ADJECTIVES.len() * 7);
        let now = 1_800_000_000_000;
        let first = customer(&products, 7, 3, now);
        let again = customer(&products, 7, 3, now);
        assert_eq!(first.events.len(), again.events.len());
        assert_eq!(first.events[0].1, again.events[0].1);
        // Signed-in events from the site and the app prove whose they are.
        for (channel, event) in &first.events {
            if let (Some(secret), Some(user)) = (channel.identity_secret(), event["userId"].as_str()) {
                let token = event["context"]["identityToken"].as_str().unwrap_or_default();
                assert!(tactful_domain::identity::token_valid(secret, user, token), "{event}");
            }
        }
        let total: usize = (0..200).map(|index| customer(&products, 7, index, now).events.len()).sum();
        assert!(total > 200 * 5, "customers do things: {total}");
        let orders = (0..200)
            .flat_map(|index| customer(&products, 7, index, now).events)
            .filter(|(channel, event)| *channel == Channel::Backend && event["event"] == "Order Completed")
            .count();
        assert!(orders > 20, "some customers order: {orders}");
    }

    /// The demo's aggregate query counts the people the example catalog lets analytics count: UK
    /// customers who said yes, Californians who did not say no (EU customers never: the example's
    /// EU jurisdiction keeps personal data out of analytics). The default 2,000 customers must hold
    /// enough of them for groups to clear the noisy threshold (about 90 people at ε = 1 with 5
    /// rows per person), so the query shows real groups.
    #[test]
    fn the_default_shop_has_hundreds_of_people_analytics_may_count() {
        let products = products();
        let now = 1_800_000_000_000;
        let mut counted = 0;
        let mut eu = 0;
        for index in 0..2_000 {
            let customer = customer(&products, 42, index, now);
            let Some(identify) = customer.events.iter().map(|(_, e)| e).find(|e| e["type"] == "identify")
            else {
                continue;
            };
            let address = &identify["traits"]["address"];
            let analytics = identify["context"]["consent"]["categoryPreferences"]["Analytics"] == true;
            match (address["country"].as_str(), address["state"].as_str()) {
                (Some("GB"), None) | (Some("US"), Some("CA")) if analytics => counted += 1,
                (Some("US"), state) => assert_eq!(state, Some("CA"), "US addresses carry their state"),
                (Some("GB"), _) => {}
                _ => eu += 1,
            }
        }
        assert!(counted >= 250, "{counted} people analytics may count");
        assert!(eu > counted, "most customers are in the EU, and are not counted: {eu}");
    }
}
