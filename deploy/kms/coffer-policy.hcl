# The least privilege of the KMS plugin: read the key (Status, key_id),
# encrypt and decrypt with it. It may not rotate, export or delete it.
path "transit/keys/k8s-etcd" {
  capabilities = ["read"]
}
path "transit/encrypt/k8s-etcd" {
  capabilities = ["update"]
}
path "transit/decrypt/k8s-etcd" {
  capabilities = ["update"]
}
