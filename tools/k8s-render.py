#!/usr/bin/env python3
"""Renders deploy/kubernetes as `kubectl apply -k` would for what its
kustomization uses (resources, namespace, labels) and prints the objects
as one JSON list; with --validate VERSION, first checks each against that
Kubernetes version's schemas with kubernetes-validate (offline, strict:
unknown fields fail). Extra manifest files (--also) are validated and
printed too.

    tools/k8s-render.py [--validate 1.31] [--also FILE]... [DIR]
"""
import argparse
import json
import os
import sys

import yaml

# Kinds that live outside namespaces (of those norn's manifests use).
CLUSTER_SCOPED = {"Namespace"}
# The kustomization fields this renderer understands; any other fails it,
# so that it never silently renders less than kubectl would.
KNOWN_FIELDS = {"apiVersion", "kind", "namespace", "labels", "resources"}


def load_documents(path):
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def render(directory):
    kustomization = load_documents(os.path.join(directory, "kustomization.yaml"))[0]
    unknown = set(kustomization) - KNOWN_FIELDS
    if unknown:
        sys.exit(f"k8s-render: kustomization fields it does not render: {sorted(unknown)}")
    labels = {}
    for entry in kustomization.get("labels", []):
        if entry.get("includeSelectors") or entry.get("includeTemplates"):
            sys.exit("k8s-render: labels with includeSelectors/includeTemplates are not rendered")
        labels.update(entry["pairs"])
    objects = []
    for resource in kustomization["resources"]:
        for obj in load_documents(os.path.join(directory, resource)):
            metadata = obj.setdefault("metadata", {})
            if "namespace" in kustomization and obj["kind"] not in CLUSTER_SCOPED:
                metadata["namespace"] = kustomization["namespace"]
            metadata["labels"] = {**metadata.get("labels", {}), **labels}
            objects.append(obj)
    return objects


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", default="deploy/kubernetes")
    parser.add_argument("--validate", metavar="VERSION")
    parser.add_argument("--also", action="append", default=[], metavar="FILE")
    args = parser.parse_args()
    objects = render(args.directory)
    for extra in args.also:
        objects.extend(load_documents(extra))
    if args.validate:
        try:
            import kubernetes_validate
        except ImportError:
            sys.exit("k8s-render: kubernetes-validate is not installed: run `make deps`, or pip install kubernetes-validate==1.37.0")

        failures = []
        for obj in objects:
            name = f"{obj['kind']}/{obj['metadata'].get('name')}"
            try:
                kubernetes_validate.validate(obj, args.validate, strict=True)
            except kubernetes_validate.ValidationError as e:
                failures.append(f"{name}: {e.message} at {'.'.join(map(str, e.path))}")
            except kubernetes_validate.SchemaNotFoundError as e:
                failures.append(f"{name}: no schema ({e})")
        if failures:
            sys.exit("k8s-render: invalid manifests:\n  " + "\n  ".join(failures))
        print(f"k8s-render: {len(objects)} objects valid for Kubernetes {args.validate}", file=sys.stderr)
    json.dump(objects, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
