"""The documents for AI coding assistants that the package ships."""

from __future__ import annotations

from roomkit import get_agents_md, get_ai_context, get_llms_txt


def test_each_document_is_read_from_the_package() -> None:
    assert get_llms_txt().startswith("# RoomKit\n")
    assert get_agents_md().startswith("# RoomKit")
    # What 0.3.0's said of the library, which tools built on it may look for.
    assert "pure async python library" in get_llms_txt().lower()
    assert "pytest" in get_agents_md() and "ruff" in get_agents_md()


def test_the_context_holds_both_documents_each_under_a_heading_naming_it() -> None:
    # The two were joined with nothing naming them (0.3.0 named each).
    context = get_ai_context()
    agents = context.index("(AGENTS.md)")
    llms = context.index("(llms.txt)")
    assert context.index(get_agents_md()) > agents
    assert context.index(get_llms_txt()) > llms
