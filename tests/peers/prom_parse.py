"""Parses the Prometheus text exposition in the file named by its argument with the official client library's parser
(prometheus_client, nobody here wrote it) and prints the families as one JSON object:
{name: {"type": ..., "samples": [[sample name, labels, value], ...]}}. A document the
parser refuses exits non-zero with its error.
"""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    families = {}
    with open(sys.argv[1], encoding="utf-8") as f:
        text = f.read()
    for family in text_string_to_metric_families(text):
        families[family.name] = {
            "type": family.type,
            "samples": [[s.name, s.labels, s.value] for s in family.samples],
        }
    print(json.dumps(families))


if __name__ == "__main__":
    main()
