"""The registry imports the built-in methods from an explicit list of modules."""

from __future__ import annotations

import re
from pathlib import Path

import recunlearn.unlearn as package
from recunlearn.unlearn import available_methods
from recunlearn.unlearn.base import METHOD_MODULES


def test_the_list_names_exactly_the_modules_that_register_a_method():
    """A method module left out of the list would vanish from the registry; machinery in it would be
    imported as a method."""
    folder = Path(package.__file__).parent
    registering = {
        path.stem
        for path in folder.glob("*.py")
        if re.search(r"^@register\(", path.read_text(), re.MULTILINE)
    }
    assert registering == set(METHOD_MODULES)


def test_every_listed_module_registers_what_it_defines():
    methods = available_methods()
    assert {cls.__module__.rsplit(".", 1)[-1] for cls in methods.values()} >= set(METHOD_MODULES)
    assert {"if", "ifru", "scif", "retrain", "sisa", "apa", "llm-sisa"} <= set(methods)


def test_the_prompt_family_class_is_exported_without_loading_the_language_model_side():
    """``import recunlearn.unlearn`` stays light for collaborative users; ``LLMUnlearner`` is there
    for method authors all the same."""
    import subprocess
    import sys

    script = (
        "import sys, recunlearn.unlearn as u\n"
        "heavy = ('transformers', 'peft', 'recunlearn.unlearn._llm_common')\n"
        "assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]\n"
        "from recunlearn.unlearn import LLMUnlearner\n"
        "from recunlearn.unlearn._llm_common import LLMUnlearner as defined\n"
        "assert LLMUnlearner is defined and 'LLMUnlearner' in u.__all__\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
