"""fideslang as the judge of Tactful's Fides data maps (run from crates/cli/tests/judges.rs).

    fides.py check FILE   parse FILE with fideslang's own manifest loader and pydantic models
                          (Taxonomy, System, Dataset, Organization); print a JSON summary, exit 1
                          on any error, on a data use fideslang does not know, or on a deprecated key.
    fides.py sample FILE  write a fideslang data map made with fideslang's own models and dumped the
                          way fideslang writes manifests, for `tactful catalog import` to read.
"""

import json
import sys

import yaml
from fideslang import manifests, parse
from fideslang.default_taxonomy import DEFAULT_TAXONOMY
from fideslang.models import (
    ContactDetails,
    Dataset,
    DatasetCollection,
    DatasetField,
    FidesMeta,
    Organization,
    PrivacyDeclaration,
    System,
)


def check(path):
    taxonomy = parse.load_manifests_into_taxonomy(manifests.ingest_manifests(path))
    uses = {entry.fides_key: entry for entry in DEFAULT_TAXONOMY.data_use}
    categories = {entry.fides_key: entry for entry in DEFAULT_TAXONOMY.data_category}
    problems = []
    declarations = 0
    for system in taxonomy.system:
        System.model_validate(system.model_dump())
        for declaration in system.privacy_declarations:
            declarations += 1
            use = uses.get(declaration.data_use)
            if use is None:
                problems.append(f"data use {declaration.data_use} is not in fideslang's taxonomy")
            elif use.version_deprecated:
                problems.append(f"data use {declaration.data_use} is deprecated")
            for key in declaration.data_categories:
                category = categories.get(key)
                if category is not None and category.version_deprecated:
                    problems.append(f"data category {key} is deprecated")
    fields = 0

    def count(field_list):
        nonlocal fields
        for field in field_list or []:
            if field.fields:
                count(field.fields)
            else:
                fields += 1

    for dataset in taxonomy.dataset:
        Dataset.model_validate(dataset.model_dump())
        for collection in dataset.collections:
            count(collection.fields)
    summary = {
        "organizations": len(taxonomy.organization),
        "systems": len(taxonomy.system),
        "datasets": len(taxonomy.dataset),
        "declarations": declarations,
        "fields": fields,
        "problems": problems,
    }
    print(json.dumps(summary))
    return 1 if problems else 0


def sample(path):
    organization = Organization(
        fides_key="acme",
        name="Acme Outdoor",
        controller=ContactDetails(name="Acme Outdoor", email="privacy@acme.example"),
    )
    dataset = Dataset(
        fides_key="acme_crm_db",
        name="CRM database",
        collections=[
            DatasetCollection(
                name="traits",
                fields=[
                    DatasetField(
                        name="email",
                        data_categories=["user.contact.email"],
                        fides_meta=FidesMeta(identity="email"),
                    ),
                    DatasetField(name="first_name", data_categories=["user.name.first"]),
                    DatasetField(
                        name="address",
                        fides_meta=FidesMeta(data_type="object"),
                        fields=[
                            DatasetField(name="city", data_categories=["user.contact.address.city"]),
                            DatasetField(name="country", data_categories=["user.contact.address.country"]),
                        ],
                    ),
                    DatasetField(name="created_at"),
                ],
            ),
            DatasetCollection(
                name="orders",
                fields=[
                    DatasetField(name="order_id", data_categories=["user.behavior.purchase_history"]),
                ],
            ),
        ],
    )
    system = System(
        fides_key="acme_crm",
        organization_fides_key="acme",
        name="Acme CRM",
        system_type="Service",
        privacy_policy="https://acme.example/privacy",
        dataset_references=["acme_crm_db"],
        privacy_declarations=[
            PrivacyDeclaration(
                name="Customer profiles for recommendations",
                data_use="personalize.profiling",
                data_categories=["user.contact.email", "user.behavior.purchase_history"],
                data_subjects=["customer"],
                dataset_references=["acme_crm_db"],
                retention_period="730",
            ),
            PrivacyDeclaration(
                name="Orders and delivery",
                data_use="essential.service",
                data_categories=["user.contact", "user.name", "user.behavior.purchase_history"],
                data_subjects=["customer"],
                dataset_references=["acme_crm_db"],
                retention_period="3650",
            ),
            PrivacyDeclaration(
                name="Fraud checks",
                data_use="essential.service.security",
                data_categories=["user.device.ip_address"],
                data_subjects=["customer"],
            ),
        ],
    )
    document = {
        "organization": [organization.model_dump(mode="json")],
        "system": [system.model_dump(mode="json")],
        "dataset": [dataset.model_dump(mode="json")],
    }
    with open(path, "w", encoding="utf-8") as file:
        yaml.dump(document, file, sort_keys=False, indent=2)
    return 0


if __name__ == "__main__":
    command, path = sys.argv[1], sys.argv[2]
    sys.exit(check(path) if command == "check" else sample(path))
