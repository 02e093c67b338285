"""LICENSE is the Apache License 2.0 that setup.cfg declares; CITATION.cff is valid YAML
in the Citation File Format with this package's metadata and the MIRNet paper."""

import configparser
import hashlib
import os

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# MD5 of https://www.apache.org/licenses/LICENSE-2.0.txt, the file jax, absl and most
# Apache-2.0 packages ship unchanged.
APACHE_2_MD5 = "3b83ef96387f14655fc854ddc3c6bd57"


def _metadata() -> configparser.SectionProxy:
  parser = configparser.ConfigParser()
  parser.read(os.path.join(REPO, "setup.cfg"))
  return parser["metadata"]


def _citation() -> dict:
  with open(os.path.join(REPO, "CITATION.cff"), encoding="utf-8") as f:
    return yaml.safe_load(f)


def test_license_is_the_apache_2_text_setup_cfg_declares():
  with open(os.path.join(REPO, "LICENSE"), "rb") as f:
    text = f.read()
  assert _metadata()["license"] == "Apache-2.0"
  assert hashlib.md5(text).hexdigest() == APACHE_2_MD5
  assert b"Apache License\n                           Version 2.0, January 2004" in text


def test_citation_cff_describes_this_package():
  cff, metadata = _citation(), _metadata()
  assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
  assert cff["message"].startswith("If you use this software")
  assert cff["title"] == metadata["name"] == "mirnet_jax"
  assert cff["abstract"] == "JAX/Flax reimplementation of MIRNet"
  assert cff["version"] == metadata["version"]
  assert cff["license"] == metadata["license"]
  assert cff["authors"] == [{"name": "mirnet_jax contributors"}]
  assert "repository-code" not in cff and "url" not in cff  # there is none yet


def test_citation_cff_references_the_paper():
  paper, = [r for r in _citation()["references"] if r["type"] == "conference-paper"]
  assert paper["title"] == ("MIRNet: Learning multiple identities representations in "
                            "overlapped speech")
  assert [(a["given-names"], a["family-names"]) for a in paper["authors"]] == [
      ("Hyewon", "Han"), ("Soo-Whan", "Chung"), ("Hong-Goo", "Kang")]
  assert paper["year"] == 2020 and paper["conference"]["name"] == "Interspeech 2020"
