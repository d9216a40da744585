# The image repository. Tags are immutable, so a tag (the commit SHA the
# workflow pushes) always names the same image; untagged images (layers
# superseded by a push) are deleted after two weeks.
resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84:Images are encrypted with Google-managed keys; a customer-managed key needs a Cloud KMS key ring the organisation runs, and the images hold no data.
  location      = var.region
  repository_id = local.name
  description   = "Container images of ${local.name}"
  format        = "DOCKER"

  docker_config {
    immutable_tags = true
  }

  cleanup_policies {
    id     = "delete-untagged"
    action = "DELETE"

    condition {
      tag_state  = "UNTAGGED"
      older_than = "1209600s"
    }
  }

  depends_on = [google_project_service.apis]
}
