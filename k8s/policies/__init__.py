"""The repo's custom checkov checks (CKV_MS_*), which k8s/checkov passes to checkov with
`--external-checks-dir`: checkov loads the modules of a directory only if it has this file."""
