"""The bottom layer: pure helpers that crm/ and the connector SDK both need (UTC time
strings, identity normalizers). Imports nothing of Rapport and no AWS library, so the
SDK (connectors/sdk) runs without crm/ or boto3, e.g. in the on-premise agent."""
