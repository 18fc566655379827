//! The tables, written once for both backends: only column types that
//! diesel's `MultiConnection` supports on SQLite and PostgreSQL alike.

diesel::table! {
    accounts (id) {
        id -> BigInt,
        email -> Text,
        password_hash -> Text,
        role -> Text,
        created_at -> Timestamp,
        suspended_at -> Nullable<Timestamp>,
        suspended_by -> Nullable<BigInt>,
        last_sign_in_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    sessions (id) {
        id -> BigInt,
        token_hash -> Text,
        account_id -> BigInt,
        csrf_token -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> BigInt,
        public_id -> Text,
        seller_id -> BigInt,
        name -> Text,
        description -> Text,
        kind -> Text,
        scopes -> Text,
        secret_hash -> Text,
        secret_issued_at -> Timestamp,
        previous_secret_hash -> Nullable<Text>,
        previous_secret_expires_at -> Nullable<Timestamp>,
        expires_at -> Nullable<Timestamp>,
        lifetime_days -> Nullable<Integer>,
        created_at -> Timestamp,
        created_by -> BigInt,
        revoked_at -> Nullable<Timestamp>,
        revoked_by -> Nullable<BigInt>,
        last_used_at -> Nullable<Timestamp>,
        last_used_ip -> Nullable<Text>,
        rate_limit_per_minute -> Nullable<Integer>,
        oauth_grant_id -> Nullable<BigInt>,
        oauth_family -> Nullable<Text>,
        allowed_ips -> Nullable<Text>,
        self_rotation -> Integer,
        self_rotation_grace_minutes -> Integer,
    }
}

diesel::table! {
    oauth_apps (id) {
        id -> BigInt,
        client_id -> Text,
        owner_id -> BigInt,
        name -> Text,
        homepage -> Nullable<Text>,
        redirect_uris -> Text,
        redirect_prefixes -> Text,
        scopes -> Text,
        confidential -> Integer,
        secret_id -> Nullable<Text>,
        secret_hash -> Nullable<Text>,
        previous_secret_id -> Nullable<Text>,
        previous_secret_hash -> Nullable<Text>,
        previous_secret_expires_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        suspended_at -> Nullable<Timestamp>,
        suspended_by -> Nullable<BigInt>,
        device_flow -> Integer,
    }
}

diesel::table! {
    oauth_grants (id) {
        id -> BigInt,
        app_id -> BigInt,
        seller_id -> BigInt,
        scopes -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    oauth_codes (id) {
        id -> BigInt,
        public_id -> Text,
        secret_digest -> Text,
        grant_id -> BigInt,
        redirect_uri -> Nullable<Text>,
        scopes -> Text,
        code_challenge -> Nullable<Text>,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        family -> Nullable<Text>,
    }
}

diesel::table! {
    oauth_refresh_tokens (id) {
        id -> BigInt,
        public_id -> Text,
        secret_digest -> Text,
        grant_id -> BigInt,
        family -> Text,
        scopes -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        used_ip -> Nullable<Text>,
        successor_id -> Nullable<BigInt>,
        successor_sealed -> Nullable<Text>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    oauth_device_codes (id) {
        id -> BigInt,
        public_id -> Text,
        secret_digest -> Text,
        user_code_digest -> Text,
        app_id -> BigInt,
        scopes -> Text,
        status -> Text,
        interval_secs -> Integer,
        last_polled_at -> Nullable<Timestamp>,
        seller_id -> Nullable<BigInt>,
        grant_id -> Nullable<BigInt>,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        decided_at -> Nullable<Timestamp>,
        used_at -> Nullable<Timestamp>,
        family -> Nullable<Text>,
        expiry_recorded -> Integer,
    }
}

diesel::joinable!(oauth_grants -> oauth_apps (app_id));
diesel::joinable!(oauth_codes -> oauth_grants (grant_id));
diesel::joinable!(oauth_refresh_tokens -> oauth_grants (grant_id));
diesel::allow_tables_to_appear_in_same_query!(oauth_apps, oauth_grants, oauth_codes, oauth_refresh_tokens);
diesel::allow_tables_to_appear_in_same_query!(oauth_apps, accounts);
diesel::allow_tables_to_appear_in_same_query!(oauth_apps, api_tokens);
diesel::allow_tables_to_appear_in_same_query!(oauth_grants, accounts);
diesel::allow_tables_to_appear_in_same_query!(oauth_grants, api_tokens);

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        occurred_at -> Timestamp,
        kind -> Text,
        event -> Text,
        outcome -> Text,
        seller_id -> Nullable<BigInt>,
        actor_id -> Nullable<BigInt>,
        subject -> Nullable<Text>,
        token_id -> Nullable<Text>,
        method -> Nullable<Text>,
        path -> Nullable<Text>,
        status -> Nullable<Integer>,
        required_scope -> Nullable<Text>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        latency_us -> Nullable<BigInt>,
        request_id -> Nullable<Text>,
        detail -> Nullable<Text>,
        request_count -> Nullable<BigInt>,
        client_id -> Nullable<Text>,
        upstream_status -> Nullable<Integer>,
        upstream_latency_us -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// Bumped by trigger on every token change that matters to the gate.
    token_revision (id) {
        id -> Integer,
        value -> BigInt,
    }
}

diesel::table! {
    flashes (id) {
        id -> BigInt,
        session_id -> BigInt,
        kind -> Text,
        subject -> Text,
        sealed -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::joinable!(flashes -> sessions (session_id));
diesel::allow_tables_to_appear_in_same_query!(flashes, sessions);
diesel::joinable!(sessions -> accounts (account_id));
diesel::joinable!(api_tokens -> accounts (seller_id));
diesel::joinable!(api_tokens -> oauth_grants (oauth_grant_id));

diesel::allow_tables_to_appear_in_same_query!(accounts, sessions, api_tokens, audit_events);

diesel::table! {
    products (id) {
        id -> BigInt,
        seller_id -> BigInt,
        sku -> Text,
        name -> Text,
        description -> Text,
        price_cents -> BigInt,
        currency -> Text,
        active -> Integer,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    inventory (id) {
        id -> BigInt,
        seller_id -> BigInt,
        sku -> Text,
        quantity -> BigInt,
        location -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    orders (id) {
        id -> BigInt,
        seller_id -> BigInt,
        customer_email -> Text,
        status -> Text,
        currency -> Text,
        total_cents -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    order_items (id) {
        id -> BigInt,
        order_id -> BigInt,
        sku -> Text,
        quantity -> BigInt,
        unit_price_cents -> BigInt,
    }
}

diesel::joinable!(order_items -> orders (order_id));
diesel::allow_tables_to_appear_in_same_query!(products, inventory, orders, order_items);

diesel::table! {
    /// Which token revision each running instance has applied, and when.
    gate_instances (id) {
        id -> Text,
        started_at -> Timestamp,
        heartbeat_at -> Timestamp,
        revision_seen -> BigInt,
    }
}

diesel::table! {
    /// Sign-in attempts, claimed before the password is checked.
    login_attempts (id) {
        id -> BigInt,
        subject -> Text,
        ip -> Nullable<Text>,
        started_at -> Timestamp,
        outcome -> Nullable<Text>,
    }
}

diesel::table! {
    /// Keys shared by every instance, made once.
    server_secrets (name) {
        name -> Text,
        value -> Text,
    }
}

diesel::table! {
    assertion_keys (kid) {
        kid -> Text,
        public_jwk -> Text,
        private_key -> Text,
        sealed -> Integer,
        created_at -> Timestamp,
        retired_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    token_reminders (id) {
        id -> BigInt,
        token_id -> BigInt,
        kind -> Text,
        secret_issued_at -> Timestamp,
        claimed_at -> Timestamp,
        sent_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    token_leaks (id) {
        id -> BigInt,
        token_id -> BigInt,
        seller_id -> BigInt,
        url -> Text,
        source -> Text,
        reported_at -> Timestamp,
    }
}

diesel::joinable!(token_reminders -> api_tokens (token_id));
diesel::joinable!(token_leaks -> api_tokens (token_id));
diesel::allow_tables_to_appear_in_same_query!(token_reminders, api_tokens);
diesel::allow_tables_to_appear_in_same_query!(token_reminders, accounts);
diesel::allow_tables_to_appear_in_same_query!(token_leaks, api_tokens);
diesel::allow_tables_to_appear_in_same_query!(token_leaks, accounts);

diesel::table! {
    oidc_identities (id) {
        id -> BigInt,
        account_id -> BigInt,
        issuer -> Text,
        subject -> Text,
        created_at -> Timestamp,
        last_sign_in_at -> Timestamp,
    }
}

diesel::table! {
    oidc_pending (id) {
        id -> BigInt,
        state_hash -> Text,
        nonce -> Text,
        pkce_verifier -> Text,
        return_to -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::joinable!(oidc_identities -> accounts (account_id));
diesel::allow_tables_to_appear_in_same_query!(oidc_identities, accounts);
