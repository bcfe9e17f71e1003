#!/usr/bin/env python3
"""Least privilege in template.yaml, checked offline.

Every function's role may allow only the actions its code calls (the lists below, each with
the code that needs it), only on resources this stack declares, with no wildcard in an action
or a resource. Functions get no SAM policy templates (they would add managed policies), and a
role is assumable by Lambda alone. A function this file does not know fails the check until
its actions are listed here.

    python3 infra/check-iam.py [template.yaml]
    python3 infra/check-iam.py --self-test    # proves the check fails on seeded bad roles
"""

import copy
import sys

import yaml

LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}  # the function's own log group
SECRETS = {"secretsmanager:GetSecretValue"}  # enroll_aws::secrets, once per cold start
KMS = {"kms:Decrypt", "kms:GenerateDataKey"}  # secret, environment, encrypted queues/table
CONSUME = {  # what the SQS event source mapping does with the function's role
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
}
LEDGER = {  # enroll_aws::dynamo: claims, conditional writes, the due index, batch reads
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchGetItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:Query",
}
RATE = {"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem"}  # the shared budget

ALLOWED = {
    # functions/ingest: verify, then SendMessage to the provision queue; a tenant's
    # configuration item (GetItem, only the `tenants` partition: a LeadingKeys condition).
    "ingest": LOGS | SECRETS | KMS | {"sqs:SendMessage", "dynamodb:GetItem"},
    # functions/provision: ledger, SCIM budget, align queue and its own DLQ.
    "provision": LOGS | SECRETS | KMS | CONSUME | LEDGER | RATE | {"sqs:SendMessage"},
    # functions/align: Notion budget, per-buyer leases (claim and release), parks in its DLQ
    # and defers to its own queue.
    "align": LOGS | SECRETS | KMS | CONSUME | RATE | {"dynamodb:DeleteItem", "sqs:SendMessage"},
    # functions/expire: reconciles due buyers through the ledger and SCIM; queues the
    # outbound events a change produces.
    "expire": LOGS | SECRETS | KMS | LEDGER | RATE | {"sqs:SendMessage"},
    # functions/notify: delivers outbound events; the disabled-endpoint items and history
    # (GetItem, PutItem), parks in its DLQ.
    "notify": LOGS | SECRETS | KMS | CONSUME | {"dynamodb:GetItem", "dynamodb:PutItem", "sqs:SendMessage"},
}


# The one pattern allowed a wildcard: every tenant's secret (enroll_aws::tenants), which
# `enroll tenant add` creates after deployment, so no resource of the stack can name it. Only
# GetSecretValue may use it, and only under this stack's own prefix.
TENANT_SECRETS = (
    "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
    "${AWS::StackName}/tenant/*"
)


class Tagged:
    """A CloudFormation intrinsic (!Ref, !GetAtt, !Sub, ...) kept as tag and value."""

    def __init__(self, tag, value):
        self.tag, self.value = tag, value


def _any_tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return Tagged(suffix, value)


class Loader(yaml.SafeLoader):
    pass


Loader.add_multi_constructor("!", _any_tag)


def as_list(v):
    return v if isinstance(v, list) else [v]


def references(resource, logical_ids):
    """The stack resources a Resource entry names; None when it names none (a literal)."""
    if isinstance(resource, Tagged):
        if resource.tag == "GetAtt":
            target = resource.value
            target = target[0] if isinstance(target, list) else target.split(".")[0]
            return {target} if target in logical_ids else None
        if resource.tag == "Ref":
            return {resource.value} if resource.value in logical_ids else None
        if resource.tag == "Sub":
            text = resource.value[0] if isinstance(resource.value, list) else resource.value
            named = {
                part.split("}")[0].split(".")[0]
                for part in text.split("${")[1:]
            }
            found = named & logical_ids
            return found or None
    return None


def intrinsic_key(value):
    """`{'Fn::GetAtt': ...}` written in long form counts like the short tag."""
    if isinstance(value, dict) and len(value) == 1:
        (k, v), = value.items()
        if k in ("Ref", "Fn::GetAtt", "Fn::Sub"):
            return Tagged(k.replace("Fn::", ""), v)
    return value


def check(template):
    problems = []
    resources = template.get("Resources", {})
    logical_ids = set(resources)
    roles = {}
    for name, res in resources.items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        props = res.get("Properties", {})
        binary = (
            res.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
            or str(props.get("CodeUri", "")).rstrip("/").split("/")[-1]
        )
        if "Policies" in props:
            problems.append(f"{name}: SAM Policies add managed policies; use its own role")
        role = intrinsic_key(props.get("Role"))
        if not (isinstance(role, Tagged) and role.tag == "GetAtt"):
            problems.append(f"{name}: needs Role: !GetAtt <its role>.Arn")
            continue
        target = role.value[0] if isinstance(role.value, list) else role.value.split(".")[0]
        roles[target] = (name, binary)

    for name, res in resources.items():
        if res.get("Type") != "AWS::IAM::Role":
            continue
        props = res.get("Properties", {})
        if props.get("ManagedPolicyArns"):
            problems.append(f"{name}: managed policies grant more than the code uses")
        for st in props.get("AssumeRolePolicyDocument", {}).get("Statement", []):
            services = as_list(st.get("Principal", {}).get("Service", []))
            if set(services) != {"lambda.amazonaws.com"} or "AWS" in st.get("Principal", {}):
                problems.append(f"{name}: only Lambda may assume a function's role")
        if name not in roles:
            problems.append(f"{name}: a role no function of this stack uses")
            continue
        function, binary = roles[name]
        allowed = ALLOWED.get(binary)
        if allowed is None:
            problems.append(
                f"{function}: unknown function `{binary}`: list its actions in infra/check-iam.py"
            )
            continue
        for policy in props.get("Policies", []):
            for st in policy.get("PolicyDocument", {}).get("Statement", []):
                sid = st.get("Sid", "?")
                where = f"{name}/{policy.get('PolicyName')}/{sid}"
                if st.get("Effect") != "Allow":
                    continue
                if "NotAction" in st or "NotResource" in st:
                    problems.append(f"{where}: NotAction/NotResource grant everything else")
                for action in as_list(st.get("Action", [])):
                    if not isinstance(action, str) or "*" in action:
                        problems.append(f"{where}: wildcard action {action!r}")
                    elif action not in allowed:
                        problems.append(f"{where}: {action} is not used by {binary}")
                actions = set(as_list(st.get("Action", [])))
                for resource in as_list(st.get("Resource", [])):
                    resource = intrinsic_key(resource)
                    if (
                        isinstance(resource, Tagged)
                        and resource.tag == "Sub"
                        and resource.value == TENANT_SECRETS
                        and actions <= SECRETS
                    ):
                        continue
                    if isinstance(resource, str):
                        problems.append(f"{where}: literal resource {resource!r}")
                    elif references(resource, logical_ids) is None:
                        problems.append(f"{where}: a resource this stack does not declare")
                    elif resource.tag == "Sub" and "*" in str(resource.value):
                        problems.append(f"{where}: wildcard in {resource.value!r}")
    return problems


def self_test(template):
    """Each seeded mistake must be caught; the template itself must pass."""
    if check(template):
        return ["the template itself fails, so the self-test proves nothing"]
    role = next(n for n, r in template["Resources"].items() if r.get("Type") == "AWS::IAM::Role")

    def seeded(mutate):
        t = copy.deepcopy(template)
        statements = t["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        mutate(t, statements)
        return t

    cases = {
        "wildcard action": lambda t, s: s.append({"Effect": "Allow", "Action": "sqs:*",
                                                  "Resource": Tagged("GetAtt", "Table.Arn")}),
        "wildcard resource": lambda t, s: s.append({"Effect": "Allow", "Action": "logs:PutLogEvents",
                                                    "Resource": "*"}),
        "unused action": lambda t, s: s.append({"Effect": "Allow", "Action": "dynamodb:Scan",
                                                "Resource": Tagged("GetAtt", "Table.Arn")}),
        "foreign resource": lambda t, s: s.append({"Effect": "Allow", "Action": "sqs:SendMessage",
                                                   "Resource": Tagged("Sub", "arn:aws:sqs:*:*:other")}),
        "tenant secret pattern on another action": lambda t, s: s.append(
            {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": Tagged("Sub", TENANT_SECRETS)}),
        "managed policy": lambda t, s: t["Resources"][role]["Properties"].__setitem__(
            "ManagedPolicyArns", ["arn:aws:iam::aws:policy/AdministratorAccess"]),
    }
    missed = [name for name, mutate in cases.items() if not check(seeded(mutate))]
    return [f"self-test: a seeded {m} was not caught" for m in missed]


def main(argv):
    test = "--self-test" in argv
    paths = [a for a in argv if not a.startswith("--")]
    path = paths[0] if paths else "template.yaml"
    with open(path) as f:
        template = yaml.load(f, Loader=Loader)
    problems = self_test(template) if test else check(template)
    for p in problems:
        print(f"check-iam: {p}", file=sys.stderr)
    if problems:
        return 1
    print("check-iam: every role grants only what its function uses"
          + (" (self-test: seeded mistakes caught)" if test else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
