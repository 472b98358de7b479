// Who is signed in, shared by every page (GET /api/v1/me), and what a case role allows
// (docs/security.md: the same table the API enforces; the API stays the judge).
import { createContext } from "preact";
import { useContext, useEffect, useState } from "preact/hooks";
import { type Me } from "./api/client";
import { load } from "./api/prefetch";

export const MeContext = createContext<Me | null>(null);

export function useMe(): Me | null {
  return useContext(MeContext);
}

export type CaseRole = "owner" | "analyst" | "viewer" | null;

export interface Rights {
  role: CaseRole;
  upload: boolean;
  analyse: boolean;
  export: boolean;
  delete: boolean;
  /** Share the case, change or end memberships (case.share: owners, admins). */
  share: boolean;
}

/** What `me` may do in a case where their membership role is `role` (admins: everything). */
export function rights(me: Me | null, role: CaseRole): Rights {
  const admin = me?.role === "admin";
  const guest = me?.role === "guest";
  const writer = admin || (!guest && (role === "owner" || role === "analyst"));
  return {
    role,
    upload: writer,
    analyse: writer,
    export: writer,
    delete: admin || (!guest && role === "owner"),
    share: admin || (!guest && role === "owner"),
  };
}

/** The caller's role in a case, from its members (null: not a member, or not known). */
export async function caseRole(me: Me, caseId: string): Promise<CaseRole> {
  const { data } = await load("members", caseId);
  return data?.find((member) => member.user_id === me.user_id)?.role ?? null;
}

export function useRights(caseId: string): Rights | null {
  const me = useMe();
  const [result, setResult] = useState<Rights | null>(null);
  useEffect(() => {
    if (me === null) return;
    let live = true;
    caseRole(me, caseId)
      .catch(() => null)
      .then((role) => live && setResult(rights(me, role)));
    return () => {
      live = false;
    };
  }, [me, caseId]);
  return result;
}
