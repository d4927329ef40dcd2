"""Checks breakglass audit output with an independent C2SP / RFC 6962 verifier (tlog-scales).

usage: tlog_interop.py CHECKPOINT VKEY INCLUSION_PROOF LEAF_FILE OLD_CHECKPOINT CONSISTENCY_PROOF
Exits 0 when the checkpoint signature, the inclusion proof and the consistency proof all verify.
"""
import base64, hashlib, sys

from tlog_scales import signing, tlog


def main():
    checkpoint_file, vkey_text, inclusion_file, leaf_file, old_file, consistency_file = sys.argv[1:7]
    vkey = signing.Vkey.from_string(vkey_text.strip())
    checkpoint = tlog.Checkpoint.from_text(open(checkpoint_file).read())
    checkpoint.verify(vkey)

    lines = open(inclusion_file).read().split("\n")
    if lines[0] != "c2sp.org/tlog-proof@v1" or not lines[1].startswith("index "):
        sys.exit("not a c2sp.org/tlog-proof@v1 block")
    index = int(lines[1].split()[1])
    hashes = []
    for line in lines[2:]:
        if not line:
            break
        hashes.append(base64.b64decode(line))
    leaf = open(leaf_file, "rb").read()
    tlog.InclusionProof(index, checkpoint.size, hashes).check(hashlib.sha256(b"\x00" + leaf).digest(), checkpoint.root_hash)

    old = tlog.Checkpoint.from_text(open(old_file).read())
    old.verify(vkey)
    proof = [base64.b64decode(line) for line in open(consistency_file).read().split()]
    tlog.ConsistencyProof(old.size, checkpoint.size, proof).check(old.root_hash, checkpoint.root_hash)
    print("tlog-scales: checkpoint signature, inclusion proof of %d and consistency %d -> %d verified" % (index, old.size, checkpoint.size))


if __name__ == "__main__":
    main()
