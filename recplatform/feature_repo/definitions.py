"""Feast definitions of recplatform: entities user/item and the four feature views over the `rec` tables.

The offline sources are the platform's own tables and views in schema ``rec`` (PostgreSQLSource);
Postgres is the source of truth and Feast only serves it. ``recplatform.features.write_online``
reads the same sources (table, join key, features, timestamp field) from these objects, so this
file is the one place that maps tables to features. It imports nothing from recplatform so that
the plain ``feast`` CLI can apply it too.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, ValueType
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
from feast.types import Array, Float64, Int64, String, UnixTimestamp

# ttl=0 means "never expires": demographics and metadata are valid until they change, and the
# aggregates are rewritten whenever interactions arrive.
NO_EXPIRY = timedelta(0)

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A platform user (rec.users.user_id).",
)
item = Entity(
    name="item",
    join_keys=["item_id"],
    value_type=ValueType.STRING,
    description="A catalogue item (rec.items.item_id).",
)

users_source = PostgreSQLSource(
    name="rec_users",
    table="rec.users",
    timestamp_field="updated_at",
    description="rec.users: one row per user, updated_at changes on every upsert.",
)
items_source = PostgreSQLSource(
    name="rec_items",
    table="rec.items",
    timestamp_field="updated_at",
    description="rec.items: one row per item.",
)
item_popularity_source = PostgreSQLSource(
    name="rec_item_popularity",
    table="rec.item_popularity",
    timestamp_field="event_timestamp",
    description="View over rec.interactions grouped by item.",
)
user_activity_source = PostgreSQLSource(
    name="rec_user_activity",
    table="rec.user_activity",
    timestamp_field="event_timestamp",
    description="View over rec.interactions grouped by user.",
)

user_demographics = FeatureView(
    name="user_demographics",
    entities=[user],
    ttl=NO_EXPIRY,
    schema=[
        Field(name="age", dtype=Int64),
        Field(name="gender", dtype=String),
        Field(name="occupation", dtype=String),
        Field(name="zip_code", dtype=String),
    ],
    source=users_source,
    online=True,
    description="Who the user is: the input of the demographic prompt and of cold-start fallbacks.",
)
item_metadata = FeatureView(
    name="item_metadata",
    entities=[item],
    ttl=NO_EXPIRY,
    schema=[
        Field(name="title", dtype=String),
        Field(name="year", dtype=Int64),
        Field(name="genres", dtype=Array(String)),
        Field(name="description", dtype=String),
    ],
    source=items_source,
    online=True,
    description="What the item is: the input of the item card that gets embedded.",
)
item_popularity = FeatureView(
    name="item_popularity",
    entities=[item],
    ttl=NO_EXPIRY,
    schema=[
        Field(name="n_interactions", dtype=Int64),
        Field(name="n_users", dtype=Int64),
        Field(name="mean_rating", dtype=Float64),
        Field(name="last_interaction_at", dtype=UnixTimestamp),
    ],
    source=item_popularity_source,
    online=True,
    description="Interaction counts per item, for popularity ranking and novelty.",
)
user_activity = FeatureView(
    name="user_activity",
    entities=[user],
    ttl=NO_EXPIRY,
    schema=[
        Field(name="n_interactions", dtype=Int64),
        Field(name="mean_rating", dtype=Float64),
        Field(name="last_interaction_at", dtype=UnixTimestamp),
    ],
    source=user_activity_source,
    online=True,
    description="Interaction counts per user: warm versus cold start.",
)

user_features = FeatureService(
    name="user_features",
    features=[user_demographics, user_activity],
    description="Everything served for a user.",
)
item_features = FeatureService(
    name="item_features",
    features=[item_metadata, item_popularity],
    description="Everything served for an item.",
)
