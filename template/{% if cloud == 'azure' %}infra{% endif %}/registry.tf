# The image registry: Entra ID only (no admin user, no anonymous pull), and
# untagged manifests (superseded by a push) deleted after a week. Premium for
# zone redundancy, the retention policy and private endpoints later on.
resource "azurerm_container_registry" "main" {
  # checkov:skip=CKV_AZURE_139:GitHub-hosted runners push over the internet; every request is authenticated with Entra ID (admin user and anonymous pull are off).
  # checkov:skip=CKV_AZURE_165:Geo-replication serves pulls from several regions; the cluster runs in one.
  # checkov:skip=CKV_AZURE_166:Quarantine holds every image until an external scanner releases it, and this template runs none; Microsoft Defender for Containers (a subscription plan) scans pushed images without blocking them.
  # checkov:skip=CKV_AZURE_164:Signed images (content trust) need a signing step in CI and an admission policy in the cluster, which this template does not set up yet.
  name                = local.compact_name
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  sku                 = "Premium"
  tags                = local.tags

  admin_enabled                 = false
  anonymous_pull_enabled        = false
  public_network_access_enabled = true
  zone_redundancy_enabled       = true
  data_endpoint_enabled         = true
  retention_policy_in_days      = 7
}
