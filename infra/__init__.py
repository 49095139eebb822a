"""Infrastructure as code: CloudFormation resources and the emulator bootstrap."""
