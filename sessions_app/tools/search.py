"""The `search` tool: full-text search over the user's own files and messages, ranked and bounded."""

from sessions_app.selectors import search_own_content
from sessions_app.tools import Tool, ToolContext, register

DEFAULT_HITS, MAX_HITS = 5, 10
RESULT_MAX_CHARS = 4000


def search(context: ToolContext, arguments: dict) -> str:
    query = arguments["query"].strip()
    hits = search_own_content(user=context.user, query=query, limit=arguments.get("limit", DEFAULT_HITS))
    if not hits:
        return f"No files or messages of yours match {query!r}."
    lines = [f"{len(hits)} result(s) for {query!r}, best first:"]
    for hit in hits:
        if hit.kind == "file":
            lines.append(f'- file #{hit.id} "{hit.title}" (read it with file_read, file_id={hit.id})')
        else:
            title = hit.title or f"session #{hit.session_id}"
            lines.append(f'- {hit.role} message in session #{hit.session_id} "{title}": {hit.snippet}')
    text = "\n".join(lines)
    return text if len(text) <= RESULT_MAX_CHARS else text[: RESULT_MAX_CHARS - 1] + "…"


register(
    Tool(
        name="search",
        description=(
            "Search the user's own uploaded files and past chat messages (full-text, web search syntax: "
            'words, "quoted phrases", -excluded). Returns the best matches: files by id and name, '
            "messages with the matching words in context."
        ),
        parameters={
            "type": "object",
            "properties": {
                "query": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 200,
                    "description": "What to look for.",
                },
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_HITS,
                    "description": "Results wanted.",
                },
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        function=search,
    )
)
