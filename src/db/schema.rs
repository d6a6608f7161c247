// @generated automatically by Diesel CLI.

diesel::table! {
    agent_credentials (agent_id) {
        agent_id -> Text,
        runtime_hash -> Text,
        recovery_hash -> Text,
        credential_version -> Integer,
        runtime_type -> Text,
        category -> Nullable<Text>,
        display_name -> Nullable<Text>,
        description -> Nullable<Text>,
        skills -> Text,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    agent_preregistrations (id) {
        id -> Integer,
        verification_hash -> Text,
        device_hash -> Text,
        bind_hash -> Text,
        registration_token_id -> Integer,
        requested_name -> Text,
        requested_category -> Nullable<Text>,
        requested_runtime_type -> Text,
        requested_skills -> Text,
        status -> Text,
        created_at -> Text,
        expires_at -> Text,
        decided_at -> Nullable<Text>,
        decided_by -> Nullable<Text>,
        agent_id -> Nullable<Text>,
        last_polled_at -> Nullable<Text>,
        poll_interval -> Integer,
    }
}

diesel::table! {
    agent_task_counts (agent_id) {
        agent_id -> Text,
        total -> Integer,
        assigned -> Integer,
        running -> Integer,
        done -> Integer,
        failed -> Integer,
        cost_usd -> Double,
    }
}

diesel::table! {
    confidence_counts (bucket, status) {
        bucket -> Integer,
        status -> Text,
        tasks -> Integer,
        total -> Double,
    }
}

diesel::table! {
    agents (id) {
        id -> Integer,
        agent_id -> Text,
        name -> Text,
        machine -> Nullable<Text>,
        capabilities -> Text,
        excluded -> Text,
        max_concurrent -> Integer,
        status -> Text,
        role -> Nullable<Text>,
        soul_content -> Nullable<Text>,
        config -> Text,
        fcm_token -> Nullable<Text>,
        last_heartbeat -> Nullable<Text>,
        registered_at -> Text,
        updated_at -> Text,
        session_key -> Nullable<Text>,
        operator_status -> Nullable<Text>,
        last_activity -> Nullable<Text>,
        state -> Text,
    }
}

diesel::table! {
    approvals (id) {
        id -> Integer,
        task_id -> Integer,
        agent_id -> Text,
        tool -> Text,
        input -> Nullable<Text>,
        reason -> Nullable<Text>,
        status -> Text,
        decided_by -> Nullable<Text>,
        note -> Nullable<Text>,
        created_at -> Text,
        expires_at -> Text,
        decided_at -> Nullable<Text>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Integer,
        at -> Text,
        actor -> Text,
        action -> Text,
        target -> Nullable<Text>,
        detail -> Nullable<Text>,
        prev_hash -> Nullable<Text>,
        hash -> Nullable<Text>,
    }
}

diesel::table! {
    consumer_leases (agent_id) {
        agent_id -> Text,
        consumer_id -> Text,
        opened_at -> Text,
        expires_at -> Text,
    }
}

diesel::table! {
    cost_usage (day, agent_id, model) {
        day -> Text,
        agent_id -> Text,
        model -> Text,
        cost_usd -> Double,
        tokens_in -> Integer,
        tokens_out -> Integer,
    }
}

diesel::table! {
    escalations (id) {
        id -> Integer,
        task_id -> Nullable<Integer>,
        agent_id -> Nullable<Text>,
        reason -> Text,
        status -> Text,
        created_by -> Text,
        created_at -> Text,
        resolved_by -> Nullable<Text>,
        resolved_at -> Nullable<Text>,
        resolution -> Nullable<Text>,
    }
}

diesel::table! {
    exchange_events (id) {
        id -> Integer,
        uuid -> Text,
        exchange_id -> Text,
        thread_ref -> Nullable<Text>,
        event_type -> Text,
        at -> Text,
        data -> Text,
        content -> Nullable<Text>,
        logged_at -> Nullable<Text>,
    }
}

diesel::table! {
    exchange_executors (exchange_id, executor_id) {
        exchange_id -> Text,
        executor_id -> Text,
        agent_id -> Text,
        display_name -> Text,
        capabilities -> Text,
        notifications -> Text,
        preferences -> Text,
        last_seen -> Nullable<Text>,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    exchange_messages (id) {
        id -> Integer,
        task_id -> Integer,
        from_id -> Text,
        mess -> Text,
        created_at -> Text,
    }
}

diesel::table! {
    exchange_requests (task_id) {
        task_id -> Integer,
        exchange_id -> Text,
        #[sql_name = "ref"]
        ref_ -> Text,
        requestor_id -> Text,
        priority -> Text,
    }
}

diesel::table! {
    exchanges (exchange_id) {
        exchange_id -> Text,
        open_registration -> Bool,
        created_by -> Text,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    hub_events (id) {
        id -> BigInt,
        name -> Text,
        audience -> Text,
        data -> Text,
    }
}

diesel::table! {
    idempotency_keys (scope, key) {
        scope -> Text,
        key -> Text,
        request_hash -> Text,
        status -> Integer,
        response -> Text,
        created_at -> Text,
    }
}

diesel::table! {
    inbox_items (id) {
        id -> Integer,
        agent_id -> Text,
        kind -> Text,
        message_id -> Nullable<Integer>,
        task_id -> Nullable<Integer>,
        body -> Nullable<Text>,
        created_at -> Text,
        delivered_at -> Nullable<Text>,
        deliveries -> Integer,
        acked_at -> Nullable<Text>,
    }
}

diesel::table! {
    leadership (id) {
        id -> Integer,
        epoch -> BigInt,
        since -> Text,
        address -> Text,
    }
}

diesel::table! {
    memories (id) {
        id -> Integer,
        agent_id -> Text,
        key -> Text,
        value -> Text,
        source_task_id -> Nullable<Integer>,
        created_at -> Text,
        updated_at -> Text,
        structured -> Bool,
    }
}

diesel::table! {
    messages (id) {
        id -> Integer,
        sender -> Text,
        sender_type -> Text,
        recipient -> Nullable<Text>,
        channel -> Text,
        content -> Text,
        created_at -> Text,
        message_type -> Nullable<Text>,
        sealed -> Bool,
    }
}

diesel::table! {
    peers (name) {
        name -> Text,
        url -> Text,
        token -> Text,
        created_by -> Text,
        created_at -> Text,
        last_seen_at -> Nullable<Text>,
        last_latency_ms -> Nullable<Integer>,
    }
}

diesel::table! {
    pipelines (id) {
        id -> Integer,
        name -> Nullable<Text>,
        created_by -> Text,
        status -> Text,
        created_at -> Text,
        completed_at -> Nullable<Text>,
    }
}

diesel::table! {
    provenance (id) {
        id -> Integer,
        task_id -> Integer,
        seq -> Integer,
        action -> Text,
        actor -> Text,
        detail -> Text,
        prev_hash -> Text,
        hash -> Text,
        created_at -> Text,
    }
}

diesel::table! {
    registration_tokens (id) {
        id -> Integer,
        hash -> Text,
        name -> Nullable<Text>,
        role -> Text,
        capabilities -> Text,
        created_by -> Text,
        created_at -> Text,
        expires_at -> Text,
        used_at -> Nullable<Text>,
        revoked_at -> Nullable<Text>,
    }
}

diesel::table! {
    relays (task_id, direction) {
        task_id -> Integer,
        direction -> Text,
        peer -> Text,
        peer_task_id -> Nullable<Integer>,
        created_at -> Text,
        result_sent_at -> Nullable<Text>,
        result_attempts -> Integer,
        result_error -> Nullable<Text>,
    }
}

diesel::table! {
    reputation (agent_id, capability) {
        agent_id -> Text,
        capability -> Text,
        successes -> Integer,
        failures -> Integer,
        verifications -> Integer,
        updated_at -> Text,
    }
}

diesel::table! {
    schedule_occurrences (template_id, occurrence_at) {
        template_id -> Integer,
        occurrence_at -> Text,
        outcome -> Text,
        task_id -> Nullable<Integer>,
        detail -> Nullable<Text>,
        recorded_at -> Text,
    }
}

diesel::table! {
    sessions (hash) {
        hash -> Text,
        user_id -> Integer,
        created_at -> Text,
        expires_at -> Text,
    }
}

diesel::table! {
    settings (key) {
        key -> Text,
        value -> Text,
        updated_by -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    task_dependencies (task_id, depends_on_id) {
        task_id -> Integer,
        depends_on_id -> Integer,
    }
}

diesel::table! {
    task_stream_chunks (id) {
        id -> Integer,
        task_id -> Integer,
        seq -> Integer,
        chunk -> Text,
        agent_id -> Text,
        created_at -> Text,
    }
}

diesel::table! {
    tasks (id) {
        id -> Integer,
        title -> Text,
        prompt -> Text,
        required_capability -> Text,
        assign_to -> Nullable<Text>,
        assigned_to -> Nullable<Text>,
        status -> Text,
        reason -> Nullable<Text>,
        priority -> Integer,
        urgency -> Text,
        deadline -> Nullable<Text>,
        model -> Text,
        created_by -> Text,
        output -> Nullable<Text>,
        pipeline_id -> Nullable<Integer>,
        pipeline_index -> Nullable<Integer>,
        template_id -> Nullable<Integer>,
        source -> Text,
        hop_count -> Integer,
        attempts -> Integer,
        lease_expires_at -> Nullable<Text>,
        timeout_seconds -> Nullable<Integer>,
        verified -> Bool,
        cost_usd -> Nullable<Double>,
        tokens_in -> Nullable<Integer>,
        tokens_out -> Nullable<Integer>,
        confidence -> Nullable<Double>,
        created_at -> Text,
        updated_at -> Text,
        assigned_at -> Nullable<Text>,
        started_at -> Nullable<Text>,
        completed_at -> Nullable<Text>,
        schedule_timeout_seconds -> Nullable<Integer>,
        fail_on_schedule_timeout -> Bool,
        progress_timeout_seconds -> Nullable<Integer>,
        max_cost_usd -> Nullable<Double>,
        max_tokens -> Nullable<Integer>,
    }
}

diesel::table! {
    template_schedules (template_id) {
        template_id -> Integer,
        cron -> Text,
        time_zone -> Text,
        catch_up -> Bool,
        paused -> Bool,
        since -> Text,
        updated_by -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    templates (id) {
        id -> Integer,
        name -> Text,
        title -> Text,
        prompt -> Text,
        required_capability -> Text,
        assign_to -> Nullable<Text>,
        priority -> Integer,
        urgency -> Text,
        model -> Text,
        created_by -> Text,
        created_at -> Text,
    }
}

diesel::table! {
    tokens (hash) {
        hash -> Text,
        agent_id -> Text,
        name -> Text,
        role -> Nullable<Text>,
        permissions -> Text,
        created_at -> Text,
        created_by -> Text,
        revoked_at -> Nullable<Text>,
        revoked_by -> Nullable<Text>,
    }
}

diesel::table! {
    users (id) {
        id -> Integer,
        username -> Text,
        password_hash -> Text,
        role -> Text,
        enabled -> Bool,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    webhook_deliveries (webhook_name, delivery_key) {
        webhook_name -> Text,
        delivery_key -> Text,
        task_id -> Nullable<Integer>,
        created_at -> Text,
    }
}

diesel::table! {
    webhooks (name) {
        name -> Text,
        secret -> Text,
        template_id -> Nullable<Integer>,
        target_agent -> Nullable<Text>,
        required_capability -> Text,
        priority -> Integer,
        created_by -> Text,
        created_at -> Text,
    }
}

diesel::joinable!(agent_preregistrations -> registration_tokens (registration_token_id));
diesel::joinable!(approvals -> tasks (task_id));
diesel::joinable!(escalations -> tasks (task_id));
diesel::joinable!(exchange_executors -> exchanges (exchange_id));
diesel::joinable!(exchange_messages -> tasks (task_id));
diesel::joinable!(exchange_requests -> exchanges (exchange_id));
diesel::joinable!(exchange_requests -> tasks (task_id));
diesel::joinable!(inbox_items -> messages (message_id));
diesel::joinable!(inbox_items -> tasks (task_id));
diesel::joinable!(provenance -> tasks (task_id));
diesel::joinable!(relays -> tasks (task_id));
diesel::joinable!(schedule_occurrences -> tasks (task_id));
diesel::joinable!(schedule_occurrences -> templates (template_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(task_stream_chunks -> tasks (task_id));
diesel::joinable!(tasks -> pipelines (pipeline_id));
diesel::joinable!(tasks -> templates (template_id));
diesel::joinable!(template_schedules -> templates (template_id));
diesel::joinable!(webhook_deliveries -> webhooks (webhook_name));
diesel::joinable!(webhooks -> templates (template_id));

diesel::table! {
    task_day_counts (day) {
        day -> Text,
        created -> Integer,
        done -> Integer,
        failed -> Integer,
    }
}

diesel::table! {
    task_status_counts (status) {
        status -> Text,
        tasks -> Integer,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    agent_credentials,
    agent_preregistrations,
    agent_task_counts,
    agents,
    approvals,
    confidence_counts,
    audit_log,
    consumer_leases,
    cost_usage,
    escalations,
    exchange_events,
    exchange_executors,
    exchange_messages,
    exchange_requests,
    exchanges,
    hub_events,
    idempotency_keys,
    inbox_items,
    leadership,
    memories,
    messages,
    peers,
    pipelines,
    provenance,
    registration_tokens,
    relays,
    reputation,
    schedule_occurrences,
    sessions,
    settings,
    task_day_counts,
    task_dependencies,
    task_status_counts,
    task_stream_chunks,
    tasks,
    template_schedules,
    templates,
    tokens,
    users,
    webhook_deliveries,
    webhooks,
);
