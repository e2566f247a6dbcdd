/**
 * Airflow LocalFilesystemBackend connection files, one per form, as Airflow's "Local Filesystem Secrets Backend"
 * page writes them: three other connections around a `dropbox_default` entry the backup DAG already had (a token
 * pasted from the App Console, a folder extra, a refresh token left by an export). Shared by the output's unit test
 * and the end-to-end test that loads each rewrite the way Airflow does (test/consumers/airflow-files.e2e.test.ts).
 */
import type { AirflowForm } from '../../formats/airflow.js';

export interface AirflowFile {
  /** A file name with the form's extension. */
  name: string;
  text: string;
  /** The ids of the other connections, which every rewrite must leave as they are. */
  others: string[];
}

export const AIRFLOW_FILES: Record<AirflowForm, AirflowFile> = {
  json: {
    name: 'conn.json',
    text: `{
    "CONN_A": "mysql://host_a",
    "CONN_B": {
        "conn_type": "scheme",
        "host": "host",
        "schema": "schema",
        "login": "Login",
        "password": "None",
        "port": "1234"
    },
    "dropbox_default": {"conn_type": "dropbox", "password": "old", "extra": "{\\"refresh_token\\": \\"rt\\", \\"folder\\": \\"/backups\\"}"},
    "CONN_C": {"conn_type": "postgres", "extra_dejson": {"sslmode": "require"}}
}
`,
    others: ['CONN_A', 'CONN_B', 'CONN_C'],
  },
  yaml: {
    name: 'conn.yaml',
    text: `# connections for the backup DAG
CONN_A: 'mysql://host_a'

CONN_B:
  - 'mysql://host_a'

dropbox_default:
  conn_type: dropbox
  login: old   # pasted from the App Console
  extra_dejson:
    folder: /backups

CONN_C:
  conn_type: scheme
  host: host
  schema: lschema
  login: Login
  password: None
  port: 1234
  extra_dejson:
    a: b
    nestedblock_dict:
      x: y
`,
    others: ['CONN_A', 'CONN_B', 'CONN_C'],
  },
  env: {
    name: 'conn.env',
    text: `# Airflow connections
CONN_A=mysql://host_a

dropbox_default=dropbox://:old@/?folder=%2Fbackups
CONN_B=my-conn-type://my-login:my-pa%2Fssword@my-host:5432/my-schema?param1=val1&param2=val2
CONN_C=google-cloud-platform://?key_path=%2Fkeys%2Fkey.json&scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcloud-platform
`,
    others: ['CONN_A', 'CONN_B', 'CONN_C'],
  },
};

/** The original text before and after the dropbox_default entry: both must come back byte-for-byte. */
export function aroundDropboxEntry(form: AirflowForm): [string, string] {
  const t = AIRFLOW_FILES[form].text;
  const [start, end] = {
    json: [t.indexOf('"dropbox_default"'), t.indexOf(',\n    "CONN_C"')],
    yaml: [t.indexOf('dropbox_default:'), t.indexOf('\nCONN_C:')],
    env: [t.indexOf('dropbox_default='), t.indexOf('\nCONN_B')],
  }[form];
  return [t.slice(0, start), t.slice(end)];
}
