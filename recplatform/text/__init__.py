"""Text for the encoder: versioned prompt templates for users and items, and ZIP → region lookup."""

from recplatform.text.regions import zip_region, zip_state
from recplatform.text.templates import (
    HISTORY_MAX_TITLES,
    TEMPLATE_VERSION,
    display_title,
    history_prompt,
    item_card,
    tags_text,
    user_prompt,
)

__all__ = [
    "TEMPLATE_VERSION",
    "HISTORY_MAX_TITLES",
    "display_title",
    "history_prompt",
    "item_card",
    "tags_text",
    "user_prompt",
    "zip_region",
    "zip_state",
]
