"""FHIR resources that are valid but sparse import instead of failing the whole bundle."""

from analytics.imports.fhir import bundle_frames


def test_a_null_given_name_and_an_identifier_without_value_do_not_fail_the_bundle():
    # FHIR allows a null entry in a primitive list when its extension (_given) carries the data,
    # and an Identifier with a system but no value; both validate in fhir.resources.
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:p1",
                "resource": {
                    "resourceType": "Patient",
                    "id": "p1",
                    "identifier": [{"value": "F100"}],
                    "name": [
                        {
                            "family": "Rossi",
                            "given": [None, "Maria"],
                            "_given": [{"extension": [{"url": "http://x", "valueString": "a"}]}],
                        }
                    ],
                },
            },
            {
                "resource": {
                    "resourceType": "ImagingStudy",
                    "id": "s1",
                    "status": "available",
                    "subject": {"reference": "urn:uuid:p1"},
                    "started": "2021-02-01",
                    "identifier": [
                        {"system": "urn:dicom:uid"},
                        {"system": "urn:dicom:uid", "value": "urn:oid:1.2.3.4"},
                    ],
                }
            },
        ],
    }
    frames, rejected = bundle_frames(bundle)
    assert rejected == []
    person = frames["person"].iloc[0]
    assert (person["given_name"], person["family_name"]) == ("Maria", "Rossi")
    assert frames["imaging_study"].iloc[0]["study_uid"] == "1.2.3.4"
