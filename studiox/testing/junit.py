"""JUnit XML of a test run, as CI systems (GitHub Actions, GitLab, Jenkins) read it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path


def write(results, path: Path, seconds: float) -> None:
    """One <testsuite> per test file, one <testcase> per case; a failure carries every failed expectation."""
    suites = ET.Element("testsuites", name="studiox test", tests=str(len(results)),
                        failures=str(sum(1 for r in results if not r.passed)), time=f"{seconds:.3f}")
    by_file: dict[str, list] = {}
    for r in results:
        by_file.setdefault(r.file, []).append(r)
    for file, cases in by_file.items():
        suite = ET.SubElement(suites, "testsuite", name=file, tests=str(len(cases)),
                              failures=str(sum(1 for r in cases if not r.passed)),
                              time=f"{sum(r.seconds for r in cases):.3f}")
        for r in cases:
            case = ET.SubElement(suite, "testcase", name=r.case, classname=Path(file).name.split(".")[0],
                                 file=file, line=r.where.rsplit(":", 1)[-1], time=f"{r.seconds:.3f}")
            if not r.passed:
                failure = ET.SubElement(case, "failure", message=r.failures[0].render() if r.failures else "failed")
                failure.text = "\n".join(f.render() for f in r.failures)
            elif r.note:
                ET.SubElement(case, "system-out").text = r.note
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
